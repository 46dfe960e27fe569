/**
 * Build workers benchmark (the worker issue), against the real server in a process of its
 * own, a redis-server, worker processes (`node --import tsx src/worker/main.ts`), Docker and
 * Btrfs, all on this machine. A small C project (test/fixtures/projects/cproject: three .c
 * files compiled from scratch with gcc in autobuilder/debian-build:bookworm, no workspace
 * lineage) is built `BENCH_WORKERS_BUILDS` (default 30) times, one push webhook per branch,
 * each commit with a tree of its own (no cache hits, no supersede). Side by side:
 * - local mode with jobConcurrency N, and bullmq mode with N workers of capacity 1 each
 *   (server jobConcurrency N too), for N = 1, 2, 3; each after N warm-up builds (git
 *   mirrors, image ids), on a fresh server, Redis and worker data directories;
 * - per configuration: makespan (first webhook sent → last build finished), dispatch latency
 *   (queued → running from the builds' queuedAt/startedAt, counted from when a slot was
 *   free: max(queuedAt, the finishedAt of the build whose slot it took)), and the log lag: a
 *   build printing 1,000 timestamped lines/s for 5 s, each line's time from the container
 *   writing it to a socket.io client of /monitor (bench/logs-viewers.ts, another process)
 *   receiving it;
 * - kill -9: 3 workers, the same batch, SIGKILL of one worker process while it runs a build
 *   (with at least a fifth of the batch done). Every build must end; none may run twice (two
 *   containers of one build id in Docker's own event log, or two `success` statuses of one
 *   commit at the GitHub stand-in); the builds the dead worker held end `error` "worker …
 *   lost" within lockDuration + stalledInterval (4 s + 2 s here; the defaults are 30 s + 15 s).
 * Each table row shows the 1-minute load average after its batch: other work on the machine
 * skews every figure. `BENCH_WORKERS_BUILDS`, `BENCH_WORKERS_COUNTS` (e.g. `1,3`),
 * `BENCH_WORKERS_KILL=0` (no kill phase) and `BENCH_WORKERS_DEBUG=1` (the slowest dispatches
 * of each configuration) change the run.
 * Goals: dispatch p50 ≤ 100 ms and ≤ 2× local mode's; log lag p99 ≤ 250 ms at 1,000
 * lines/s; kill -9: every build terminal, none twice. Every process, container and directory
 * it made is removed at the end, also when a phase fails.
 */
import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import Docker from 'dockerode';
import type { BuildView } from '../src/http/build-view.js';
import { BUILD_ID_LABEL, INSTANCE_LABEL } from '../src/runner/index.js';
import { makeTestDir } from '../test/support/data-dir.js';
import { nextWholeSecond } from '../test/support/docker-events.js';
import { createGitRepository, type GitRepository } from '../test/support/git-repository.js';
import { startGitHubStandIn, type GitHubStandIn, type RecordedRequest } from '../test/support/github-stand-in.js';
import { startRedisServer } from '../test/support/redis-server.js';
import { deliver, pushPayload } from '../test/support/webhook-delivery.js';
import type { ViewersReport } from './logs-viewers.js';
import { startServerProcess, stopServerProcess } from './server-process.js';
import { formatSummary, goal, summarize, type Summary } from './stats.js';

const ROOT = resolve(import.meta.dirname, '..');
const FIXTURES = join(ROOT, 'test', 'fixtures');
const SECRET = 'workers-secret';
const OWNER = 'bench';
const REPO = 'cproject';
const CLONE_URL = `https://github.com/${OWNER}/${REPO}.git`;
const IMAGE = 'autobuilder/debian-build:bookworm';
const BUILDS = Number(process.env['BENCH_WORKERS_BUILDS'] ?? 30);
/** worker counts (and local jobConcurrency) compared; `BENCH_WORKERS_COUNTS=1,3` picks some */
const COUNTS = (process.env['BENCH_WORKERS_COUNTS'] ?? '1,2,3').split(',').map(Number);
/** Short BullMQ settings, so a lost worker is found within seconds (defaults: 30 s and 15 s). */
const LOCK_SECONDS = 4;
const STALLED_SECONDS = 2;
const HEARTBEAT_TIMEOUT_SECONDS = 3;
const LOG_LINES = 5_000;
const docker = new Docker({ socketPath: '/var/run/docker.sock' });

type Mode = 'local' | 'bullmq';
type Build = BuildView;

/** Work undone at the end of a phase, last registered first; a failing step never skips the others. */
interface Cleanup {
  add(what: string, step: () => Promise<unknown>): void;
  run(): Promise<void>;
}

function createCleanup(): Cleanup {
  const steps: { what: string; step: () => Promise<unknown> }[] = [];
  return {
    add: (what, step) => void steps.push({ what, step }),
    async run() {
      for (const { what, step } of steps.splice(0).reverse()) {
        try {
          await step();
        } catch (err) {
          console.error(`  cleanup: ${what} failed: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    },
  };
}

/** The cleanups of the phases running now, run on SIGINT/SIGTERM before exiting. */
const active = new Set<Cleanup>();

/** A server with its repository, and (bullmq) its redis-server and worker processes. */
interface Cluster {
  mode: Mode;
  url: string;
  repo: GitRepository;
  workers: Map<string, ChildProcess>;
  /** container instance label of each data directory (server and workers) */
  instances: Map<string, string>;
}

const instanceOf = (dataDir: string) => createHash('sha256').update(dataDir).digest('hex').slice(0, 16);

/** Removes every container (running or not) labelled with one of `instances`; resolves with how many. */
async function removeContainers(instances: ReadonlySet<string>): Promise<number> {
  const containers = await docker.listContainers({ all: true, filters: { label: [INSTANCE_LABEL] } });
  const ours = containers.filter((c) => instances.has(c.Labels[INSTANCE_LABEL] ?? ''));
  await Promise.all(ours.map((c) => docker.getContainer(c.Id).remove({ force: true })));
  return ours.length;
}

/** Starts a worker process with the config module `configPath`; resolves once it logs `worker ready`. */
function startWorkerProcess(configPath: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'worker', 'main.ts')], {
    cwd: ROOT,
    env: { ...process.env, AUTOBUILDER_WORKER_CONFIG: configPath },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const last: string[] = [];
  return new Promise((ok, fail) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      last.push(line);
      if (last.length > 20) last.shift();
      try {
        if ((JSON.parse(line) as { msg?: unknown }).msg === 'worker ready') ok(child);
      } catch {
        // not a log line
      }
    });
    child.once('exit', (code, signal) => fail(new Error(`the worker exited with ${code ?? signal}: ${last.join('\n')}`)));
  });
}

/** SIGTERM (the worker drains), SIGKILL after 10 s; resolves once it has exited. */
async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Every build of the bench repository, newest first. */
async function listBuilds(url: string): Promise<Build[]> {
  return ((await (await fetch(`${url}/api/builds?repo=${OWNER}/${REPO}&limit=500`)).json()) as { builds: Build[] }).builds;
}

const isTerminal = (b: Build) => b.state !== 'queued' && b.state !== 'running';

/** Polls until `count` builds of refs under `prefix/` are listed and ended; resolves with them. */
async function waitForBuilds(url: string, prefix: string, count: number, timeoutMs = 15 * 60_000): Promise<Build[]> {
  for (const deadline = Date.now() + timeoutMs; ; await sleep(200)) {
    const builds = (await listBuilds(url)).filter((b) => b.ref.startsWith(`refs/heads/${prefix}/`));
    if (builds.length >= count && builds.every(isTerminal)) return builds;
    if (Date.now() > deadline) {
      throw new Error(`${builds.filter(isTerminal).length} of ${count} builds under ${prefix}/ ended within ${timeoutMs / 1000} s`);
    }
  }
}

/** Starts a server (and for bullmq a redis-server and `workers` worker processes), undone by `cleanup`. */
async function startCluster(name: string, mode: Mode, slots: number, github: GitHubStandIn, cleanup: Cleanup): Promise<Cluster> {
  const dir = await makeTestDir(`bench-workers-${name}`);
  cleanup.add(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
  const instances = new Map<string, string>();
  const dataDir = join(dir, 'server-data');
  instances.set('server', instanceOf(dataDir));
  // registered early, so it runs after the processes have stopped
  cleanup.add('remove containers', () => removeContainers(new Set(instances.values())));
  const repo = await createGitRepository(join(dir, REPO), join(FIXTURES, 'projects', REPO));
  const tokens = Object.fromEntries(
    Array.from({ length: mode === 'bullmq' ? slots : 0 }, (_, i) => [`w${i + 1}`, `bench-worker-${i + 1}-${randomBytes(12).toString('hex')}`]),
  );
  let redisUrl = '';
  if (mode === 'bullmq') {
    const redis = await startRedisServer();
    cleanup.add(`remove ${redis.dir}`, () => rm(redis.dir, { recursive: true, force: true }));
    cleanup.add('stop redis-server', () => redis.stop());
    redisUrl = redis.url;
  }
  const configPath = join(dir, 'config.json');
  await writeFile(
    configPath,
    JSON.stringify({
      dataDir,
      listen: { host: '127.0.0.1', port: 0 },
      // its own config repository: the tests' one must not list the benchmark's project
      configRepository: { path: join(FIXTURES, 'bench-config-repo') },
      docker: { defaultImage: IMAGE, network: 'none' },
      github: { apiUrl: github.url, token: 'workers-bench-token' },
      cloneUrlRewrites: [{ from: CLONE_URL, to: repo.url }],
      jobConcurrency: slots,
      jobBacklog: 4 * BUILDS,
      logLevel: 'silent',
      ...(mode === 'bullmq'
        ? {
            dispatch: {
              mode: 'bullmq',
              redis: { url: redisUrl },
              workers: Object.fromEntries(Object.entries(tokens).map(([id, token]) => [id, { token }])),
              lockDurationSeconds: LOCK_SECONDS,
              stalledIntervalSeconds: STALLED_SECONDS,
              heartbeatTimeoutSeconds: HEARTBEAT_TIMEOUT_SECONDS,
              affinityWaitSeconds: 0,
            },
          }
        : {}),
    }),
  );
  const server = await startServerProcess(configPath, SECRET);
  cleanup.add('stop the server', () => stopServerProcess(server.child));
  const workers = new Map<string, ChildProcess>();
  for (const [id, token] of Object.entries(tokens)) {
    const workerDir = join(dir, `worker-${id}`);
    instances.set(id, instanceOf(workerDir));
    const workerConfig = join(dir, `worker-${id}.mjs`);
    const config = {
      id,
      serverUrl: server.url,
      token,
      redis: { url: redisUrl },
      capacity: 1,
      dataDir: workerDir,
      docker: { network: 'none' },
      heartbeatSeconds: 0.5,
      logLevel: 'info',
    };
    await writeFile(workerConfig, `export default ${JSON.stringify(config)};\n`);
    const child = await startWorkerProcess(workerConfig);
    cleanup.add(`stop worker ${id}`, () => stopProcess(child));
    workers.set(id, child);
  }
  for (const deadline = Date.now() + 30_000; workers.size > 0; await sleep(100)) {
    const listed = (await (await fetch(`${server.url}/api/workers`)).json()) as { workers: { id: string; live: boolean }[] };
    if (listed.workers.filter((w) => w.live).length === workers.size) break;
    if (Date.now() > deadline) throw new Error(`only ${listed.workers.filter((w) => w.live).length} of ${workers.size} workers are live`);
  }
  return { mode, url: server.url, repo, workers, instances };
}

/** Commits one change of `src/seed.h` per branch `prefix/0…count-1` (seeds from `seed`); resolves with their shas and trees. */
async function prepareCommits(repo: GitRepository, prefix: string, count: number, seed: number): Promise<{ ref: string; sha: string; tree: string }[]> {
  const commits: { ref: string; sha: string; tree: string }[] = [];
  for (let i = 0; i < count; i++) {
    await repo.branch(`${prefix}/${i}`);
    const sha = await repo.commit({ 'src/seed.h': `#define SEED ${seed + i}\n` }, `${prefix} ${i}`);
    commits.push({ ref: `refs/heads/${prefix}/${i}`, sha, tree: await repo.treeOf(sha) });
  }
  return commits;
}

/** Sends one signed push webhook per commit, one after another. */
async function pushAll(url: string, commits: readonly { ref: string; sha: string; tree: string }[]): Promise<void> {
  for (const { ref, sha, tree } of commits) {
    const payload = pushPayload({ owner: OWNER, repo: REPO, ref, sha, tree, cloneUrl: CLONE_URL });
    const response = await deliver(url, { event: 'push', payload, secret: SECRET });
    if (response.status !== 202) throw new Error(`the push of ${ref} answered ${response.status}`);
  }
}

/**
 * Queued → running of each build, counted from when it could run: the later of its
 * queuedAt and the moment a slot was free (builds taken in start order, each slot freed at
 * the finishedAt of the build that held it), in ms.
 */
function dispatchLatencies(builds: readonly Build[], slots: number): number[] {
  return dispatchDetails(builds, slots).map((d) => d.ms);
}

/** {@link dispatchLatencies} with each build and the moment it could run (ms since the epoch). */
function dispatchDetails(builds: readonly Build[], slots: number): { build: Build; ready: number; ms: number }[] {
  const started = builds.filter((b) => b.startedAt !== null).sort((a, b) => Date.parse(a.startedAt ?? '') - Date.parse(b.startedAt ?? ''));
  const freeAt: number[] = Array.from({ length: slots }, () => -Infinity);
  return started.map((b) => {
    freeAt.sort((x, y) => x - y);
    const free = freeAt.shift() ?? -Infinity;
    freeAt.push(b.finishedAt === null ? Infinity : Date.parse(b.finishedAt));
    const ready = Math.max(Date.parse(b.queuedAt), free);
    return { build: b, ready, ms: Date.parse(b.startedAt ?? '') - ready };
  });
}

/** Starts a socket.io client of /monitor in another process (bench/logs-viewers.ts) and resolves once it has its snapshot. */
async function startViewer(url: string): Promise<{ child: ChildProcessByStdio<Writable, Readable, null>; report(): Promise<ViewersReport> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'logs-viewers.ts'), url, '1'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const next = () =>
    new Promise<string>((ok, fail) => {
      lines.once('line', ok);
      child.once('exit', (code) => fail(new Error(`the viewer exited with ${code}`)));
    });
  const ready = await next();
  if (ready !== 'ready') throw new Error(`the viewer said ${ready}`);
  return {
    child,
    async report() {
      const answer = next();
      child.stdin.write('report\n');
      return JSON.parse(await answer) as ViewersReport;
    },
  };
}

/** What one configuration measured. */
interface Row {
  label: string;
  mode: Mode;
  slots: number;
  ended: number;
  success: number;
  makespanMs: number;
  dispatch: Summary;
  /** startedAt → finishedAt of each build */
  run: Summary;
  lag: Summary;
  /** 1-minute load average when the batch had ended */
  load: number;
  error?: string;
}

/** One configuration: warm-up, the batch, then the log build. */
async function measure(github: GitHubStandIn, mode: Mode, slots: number): Promise<Row> {
  const label = mode === 'local' ? `local, jobConcurrency ${slots}` : `bullmq, ${slots} worker${slots > 1 ? 's' : ''}`;
  const cleanup = createCleanup();
  active.add(cleanup);
  const empty = summarize([]);
  try {
    const c = await startCluster(`${mode}-${slots}`, mode, slots, github, cleanup);
    const warm = await prepareCommits(c.repo, 'warm', slots, 1000);
    const batch = await prepareCommits(c.repo, 'batch', BUILDS, 1);
    const logCommit = await prepareCommits(c.repo, 'log-rate', 1, 5000);
    await pushAll(c.url, warm);
    await waitForBuilds(c.url, 'warm', slots);
    const sentAt = Date.now();
    await pushAll(c.url, batch);
    const builds = await waitForBuilds(c.url, 'batch', BUILDS);
    const load = await loadAverage();
    const makespanMs = Math.max(...builds.map((b) => Date.parse(b.finishedAt ?? ''))) - sentAt;
    const failed = builds.find((b) => b.state !== 'success');
    if (failed !== undefined) console.log(`  ${label}: build ${failed.id} ended ${failed.state}: ${failed.description ?? ''}`);
    if (process.env['BENCH_WORKERS_DEBUG'] === '1') {
      for (const d of dispatchDetails(builds, slots)
        .sort((a, b) => b.ms - a.ms)
        .slice(0, 5)) {
        const b = d.build;
        console.log(
          `  ${label}: ${b.id} on ${b.worker ?? 'server'} queued ${b.queuedAt} ready ${new Date(d.ready).toISOString()} started ${b.startedAt ?? ''} ended ${b.finishedAt ?? ''}: ${d.ms} ms`,
        );
      }
    }

    const viewer = await startViewer(c.url);
    cleanup.add('stop the viewer', async () => void viewer.child.kill());
    await pushAll(c.url, logCommit);
    const [logBuild] = await waitForBuilds(c.url, 'log-rate', 1);
    // the last lines may still be on their way to the viewer
    await sleep(500);
    const report = await viewer.report();
    if (logBuild?.state !== 'success') console.log(`  ${label}: the log build ended ${logBuild?.state}: ${logBuild?.description ?? ''}`);
    if (report.lag.n !== LOG_LINES) console.log(`  ${label}: the viewer got ${report.lag.n} of ${LOG_LINES} lines (${report.skipped} left out of batches)`);
    return {
      label,
      mode,
      slots,
      ended: builds.length,
      success: builds.filter((b) => b.state === 'success').length,
      makespanMs,
      dispatch: summarize(dispatchLatencies(builds, slots)),
      run: summarize(builds.map((b) => Date.parse(b.finishedAt ?? '') - Date.parse(b.startedAt ?? ''))),
      lag: report.lag,
      load,
    };
  } catch (err) {
    return {
      label,
      mode,
      slots,
      ended: 0,
      success: 0,
      makespanMs: NaN,
      dispatch: empty,
      run: empty,
      lag: empty,
      load: NaN,
      error: err instanceof Error ? err.message : String(err),
    };
  } finally {
    await cleanup.run();
    active.delete(cleanup);
  }
}

/** Docker's own record of the containers of `ids`: start and die times (ms) per build id. */
async function containerRuns(since: Date, until: Date, ids: ReadonlySet<string>): Promise<Map<string, { start: number; die: number }[]>> {
  const stream = (await docker.getEvents({
    since: Math.floor(since.getTime() / 1000),
    until: Math.ceil(until.getTime() / 1000) + 1,
    filters: { type: ['container'], event: ['start', 'die'], label: [BUILD_ID_LABEL] },
  })) as NodeJS.ReadableStream;
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  const runs = new Map<string, { start: number; die: number }[]>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const event = JSON.parse(line) as { status?: string; Action?: string; timeNano: number; Actor: { Attributes: Record<string, string> } };
    const id = event.Actor.Attributes[BUILD_ID_LABEL] ?? '';
    if (!ids.has(id)) continue;
    const at = event.timeNano / 1e6;
    const list = runs.get(id) ?? [];
    runs.set(id, list);
    if ((event.Action ?? event.status) === 'start') list.push({ start: at, die: Infinity });
    else {
      const open = list.find((r) => r.die === Infinity);
      if (open !== undefined) open.die = at;
    }
  }
  return runs;
}

/** Kill -9 of one of three workers mid-batch. */
async function killPhase(github: GitHubStandIn): Promise<void> {
  const budget = LOCK_SECONDS + STALLED_SECONDS;
  console.log(
    `\n## kill -9 of one of 3 workers mid-batch (${BUILDS} builds; lockDuration ${LOCK_SECONDS} s + stalledInterval ${STALLED_SECONDS} s, heartbeat timeout ${HEARTBEAT_TIMEOUT_SECONDS} s)`,
  );
  const cleanup = createCleanup();
  active.add(cleanup);
  try {
    const c = await startCluster('kill', 'bullmq', 3, github, cleanup);
    const warm = await prepareCommits(c.repo, 'warm', 3, 1000);
    const batch = await prepareCommits(c.repo, 'batch', BUILDS, 1);
    await pushAll(c.url, warm);
    await waitForBuilds(c.url, 'warm', 3);
    const victimId = 'w2';
    const victim = c.workers.get(victimId);
    if (victim === undefined) throw new Error('no worker w2');
    const since = await nextWholeSecond();
    const sentAt = Date.now();
    await pushAll(c.url, batch);
    // mid-batch: a fifth done, and the victim running one
    let held: Build[] = [];
    for (const deadline = Date.now() + 5 * 60_000; ; await sleep(50)) {
      const builds = (await listBuilds(c.url)).filter((b) => b.ref.startsWith('refs/heads/batch/'));
      held = builds.filter((b) => b.state === 'running' && b.worker === victimId);
      if (builds.filter(isTerminal).length >= BUILDS / 5 && held.length > 0) break;
      if (Date.now() > deadline) throw new Error('the victim never ran a build mid-batch');
    }
    const killedAt = Date.now();
    victim.kill('SIGKILL');
    const builds = await waitForBuilds(c.url, 'batch', BUILDS, 10 * 60_000);
    const endedAt = Date.now();
    // the dead worker's container runs on unattended: wait until it has ended, so Docker has its die event
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(250)) {
      const running = await docker.listContainers({ filters: { label: [`${INSTANCE_LABEL}=${c.instances.get(victimId) ?? ''}`] } });
      if (running.length === 0) break;
    }
    const ids = new Set(builds.map((b) => b.id));
    const runs = await containerRuns(since, new Date(), ids);
    const twice = [...runs].filter(([, r]) => r.length > 1);
    const overlapping = twice.filter(([, r]) => r.some((a, i) => r.some((b, j) => i !== j && a.start < b.die && b.start < a.die)));
    const shas = new Set(builds.map((b) => b.sha));
    const isFinal = (r: RecordedRequest) =>
      r.operationId === 'repos/create-commit-status' && shas.has(r.params['sha'] ?? '') && (r.body as { state: string }).state !== 'pending';
    const finals = await github.waitFor(isFinal, BUILDS, 60_000).catch(() => github.requests.filter(isFinal));
    const successes = new Map<string, number>();
    for (const r of finals)
      if ((r.body as { state: string }).state === 'success') successes.set(r.params['sha'] ?? '', (successes.get(r.params['sha'] ?? '') ?? 0) + 1);
    const successTwice = [...successes].filter(([, n]) => n > 1);
    const lost = builds.filter((b) => b.state === 'error' && /^worker \S+ lost/.test(b.description ?? ''));
    const lostAfter = lost.map((b) => Date.parse(b.finishedAt ?? '') - killedAt);
    const states = new Map<string, number>();
    for (const b of builds) states.set(b.state, (states.get(b.state) ?? 0) + 1);
    const heldIds = held.map((b) => b.id);

    console.log(
      `  killed ${victimId} ${((killedAt - sentAt) / 1000).toFixed(1)} s into the batch, running ${heldIds.join(', ')}; all ${builds.length} ended ${((endedAt - sentAt) / 1000).toFixed(1)} s after the first webhook`,
    );
    console.log(`  states: ${[...states].map(([s, n]) => `${n} ${s}`).join(', ')}`);
    console.log(
      `  ended error "worker … lost": ${lost.length} (${lost.map((b) => `${b.id}: "${b.description ?? ''}" ${(Date.parse(b.finishedAt ?? '') - killedAt).toFixed(0)} ms after the kill`).join('; ') || 'none'})`,
    );
    console.log(
      `  containers per build (Docker events): ${[...runs.values()].filter((r) => r.length === 1).length} builds with one, ${twice.length} with more (${overlapping.length} overlapping), ${builds.length - runs.size} with none`,
    );
    console.log(`  final statuses at the GitHub stand-in: ${finals.length}; commits with two success statuses: ${successTwice.length}`);
    console.log(goal(`${BUILDS}/${BUILDS} terminal`, builds.length === BUILDS && builds.every(isTerminal)));
    console.log(goal('none run twice (one container per build id, one success per commit)', twice.length === 0 && successTwice.length === 0));
    console.log(goal('the dead worker\'s build(s), and only those, ended "worker … lost"', lost.length > 0 && lost.every((b) => heldIds.includes(b.id))));
    console.log(
      goal(`lost found ≤ lockDuration + stalledInterval (${budget} s) after the kill`, lostAfter.length > 0 && lostAfter.every((ms) => ms <= budget * 1000)),
    );
  } catch (err) {
    console.log(`  kill -9 phase FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  } finally {
    await cleanup.run();
    active.delete(cleanup);
  }
}

/** The 1-minute load average (proc(5)): other work on this machine skews every figure. */
const loadAverage = async () => Number((await readFile('/proc/loadavg', 'utf8')).split(' ')[0]);

const ms = (v: number) => (Number.isNaN(v) ? '—' : v < 10 ? v.toFixed(1) : v.toFixed(0));
const ratio = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : '—');

/** `npm run bench -- workers`: the six configurations side by side, then the kill -9 phase. */
export async function benchWorkers(): Promise<void> {
  console.log(
    `\n## build workers: ${BUILDS} builds of a small C project, local mode vs bullmq with 1, 2, 3 worker processes (this machine: ${availableParallelism()} CPUs)`,
  );
  const onSignal = (signal: NodeJS.Signals) => {
    void Promise.all([...active].map((c) => c.run())).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const github = await startGitHubStandIn();
  try {
    const rows: Row[] = [];
    for (const slots of COUNTS) for (const mode of ['local', 'bullmq'] as const) rows.push(await measure(github, mode, slots));
    console.log(
      `${'configuration'.padEnd(26)} ${'ok'.padStart(5)}  ${'makespan'.padStart(9)}  ${'dispatch p50'.padStart(12)}  ${'p95'.padStart(7)}  ${'log lag p99'.padStart(11)}  ${'load'.padStart(5)}  │ vs local: ${'makespan'.padStart(8)}  ${'disp. p50'.padStart(9)}  ${'log p99'.padStart(7)}`,
    );
    for (const row of rows) {
      const local = rows.find((r) => r.mode === 'local' && r.slots === row.slots);
      const vs =
        row.mode === 'bullmq' && local !== undefined
          ? `${ratio(row.makespanMs, local.makespanMs).padStart(8)}  ${ratio(row.dispatch.p50, local.dispatch.p50).padStart(9)}  ${ratio(row.lag.p99, local.lag.p99).padStart(7)}`
          : '';
      console.log(
        `${row.label.padEnd(26)} ${`${row.success}/${BUILDS}`.padStart(5)}  ${`${(row.makespanMs / 1000).toFixed(1)} s`.padStart(9)}  ${`${ms(row.dispatch.p50)} ms`.padStart(12)}  ${`${ms(row.dispatch.p95)} ms`.padStart(7)}  ${`${ms(row.lag.p99)} ms`.padStart(11)}  ${row.load.toFixed(1).padStart(5)}  │ ${''.padStart(10)}${vs}`,
      );
      if (row.error !== undefined) console.log(`  ${row.label} FAILED: ${row.error}`);
    }
    console.log(
      '  dispatch = queued → running, counted from when a slot was free; log lag = container → socket.io /monitor client, 1,000 lines/s; load = 1-min load average after the batch',
    );
    for (const row of rows) {
      if (row.error !== undefined) continue;
      console.log(formatSummary(`  ${row.label}: dispatch (ms)`, row.dispatch));
      console.log(formatSummary(`  ${row.label}: running → ended (ms)`, row.run));
      console.log(formatSummary(`  ${row.label}: log lag (ms)`, row.lag));
    }
    for (const row of rows.filter((r) => r.mode === 'bullmq' && r.error === undefined)) {
      const local = rows.find((r) => r.mode === 'local' && r.slots === row.slots && r.error === undefined);
      console.log(goal(`${row.label}: ${row.success}/${BUILDS} success`, row.success === BUILDS));
      console.log(goal(`${row.label}: dispatch p50 ≤ 100 ms`, row.dispatch.p50 <= 100));
      if (local !== undefined) console.log(goal(`${row.label}: dispatch p50 ≤ 2× local mode's`, row.dispatch.p50 <= 2 * local.dispatch.p50));
      console.log(goal(`${row.label}: log lag p99 ≤ 250 ms at 1,000 lines/s`, row.lag.p99 <= 250 && row.lag.n === LOG_LINES));
    }
    if (process.env['BENCH_WORKERS_KILL'] !== '0') await killPhase(github);
  } finally {
    await github.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
