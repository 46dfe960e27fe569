/**
 * Store benchmark ("nothing slow on the event loop"): a store of 100,000 builds behind the
 * real server (in a process of its own). Measures, idle and under load, a `/metrics` scrape,
 * a history page (the first and one deep behind a cursor, over HTTP) and a monitor snapshot
 * (socket.io `watch` → `snapshot`); under load, webhook ack latency at 200 signed deliveries
 * a second while builds finish at 20 a second (tag pushes of an already-built commit: cache
 * hits that end at once, with their store writes and commit statuses).
 * The old code path runs in the same run, side by side: the source of the commit before the
 * writer thread (synchronous=FULL writes on the main thread, no page indexes, /metrics and
 * cursor pages over every key), extracted with `git archive` into a temporary directory.
 * Goals: each read p95 ≤ 20 ms, webhook ack p99 ≤ 50 ms.
 *
 * Environment: `STORE_BENCH_BASELINE=<commit>` (or a directory holding another checkout) runs
 * that code, on the current schema, beside this checkout's instead of the code before the
 * writer thread; `none` skips it;
 * `AUTOBUILDER_PROFILE=<dir>` writes each server process's CPU profile (`--cpu-prof`) there.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, stat, symlink } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { sign } from '@octokit/webhooks-methods';
import { io } from 'socket.io-client';
import type { Build, BuildState } from '../src/builds/build.js';
import { openDatabase } from '../src/store/open-database.js';
import { createWriteOps } from '../src/store/sqlite-write-ops.js';
import { buildRecord } from '../test/support/build-record.js';
import { pushPayload } from '../test/support/webhook-delivery.js';
import { prepareFixtureProject, stopServerProcess } from './server-process.js';
import { formatSummary, goal, summarize, type Summary } from './stats.js';
import { sendDeliveries } from './webhook-sender.js';

const ROOT = resolve(import.meta.dirname, '..');
const SECRET = 'store-secret';
const BUILDS = Number(process.env['STORE_BENCH_BUILDS'] ?? 100_000);
const WEBHOOKS_PER_SECOND = 200;
const FINISHED_PER_SECOND = 20;
const LOAD_SECONDS = 10;
/** reads of each kind while idle: fewer for the old code, where one /metrics scrape takes seconds */
const READS = { new: 200, old: 25 };
const run = promisify(execFile);

/** Fills the database at `path` with `BUILDS` ended builds over 20 repositories and 10 refs each, one every second back from now; returns an id from the middle. */
function fill(path: string): string {
  const db = openDatabase(path, { role: 'writer' });
  const ops = createWriteOps(db);
  const states: BuildState[] = ['success', 'success', 'success', 'failure', 'error', 'cancelled'];
  const start = Date.now() - BUILDS * 1000 - 3_600_000;
  let middle = '';
  db.transaction(() => {
    for (let i = 0; i < BUILDS; i++) {
      const at = start + i * 1000;
      const repo = i % 20 === 0 ? 'acme/widget' : `acme/repo-${i % 20}`;
      const build: Build = buildRecord({
        id: `${at.toString(36)}-${randomBytes(4).toString('hex')}`,
        repo,
        ref: `refs/heads/${i % 10 === 0 ? 'main' : `branch-${i % 10}`}`,
        state: states[i % states.length] as BuildState,
        cacheKey: randomBytes(32).toString('hex'),
        queuedAt: new Date(at).toISOString(),
        startedAt: new Date(at).toISOString(),
        finishedAt: new Date(at + 500).toISOString(),
      });
      if (i === BUILDS / 2) middle = build.id;
      const { id, ref, state, queuedAt, definition, cacheKey } = build;
      ops.apply({
        kind: 'builds.insert',
        rows: [{ id, repo, ref, state, queuedAt, doc: JSON.stringify(build), definition, cacheKey, cached: 0 }],
        request: null,
        processed: null,
      });
    }
  })();
  db.close();
  return middle;
}

/** The schema the old code had: no page indexes (version 2). */
function toOldSchema(path: string): void {
  const db = openDatabase(path, { role: 'writer' });
  db.exec(`DROP INDEX builds_queued; DROP INDEX builds_state_queued; DROP INDEX builds_repo_queued; DROP INDEX builds_repo_ref_queued;
    CREATE INDEX builds_repo_ref ON builds (repo, ref, queued_at); CREATE INDEX builds_state ON builds (state); PRAGMA user_version = 2;`);
  db.close();
}

/**
 * The source of `baseline` (a commit), else of the commit before the writer thread, in a
 * temporary directory with this checkout's node_modules; null when git cannot say.
 */
async function extractOldCode(baseline: string | undefined): Promise<{ root: string; commit: string; own: boolean } | null> {
  // a directory holding a checkout (an experiment beside this one) is run where it is
  if (baseline !== undefined && (await stat(join(baseline, 'bench', 'server-process.ts')).catch(() => null)) !== null) {
    return { root: resolve(baseline), commit: basename(resolve(baseline)), own: false };
  }
  try {
    let commit: string;
    if (baseline !== undefined) commit = (await run('git', ['rev-parse', '--verify', `${baseline}^{commit}`], { cwd: ROOT })).stdout.trim();
    else {
      const { stdout } = await run('git', ['log', '--diff-filter=A', '--format=%H', '--', 'src/store/sqlite-writer.ts'], { cwd: ROOT });
      const added = stdout.trim().split('\n').at(-1);
      if (added === undefined || added === '') return null;
      commit = (await run('git', ['rev-parse', `${added}^`], { cwd: ROOT })).stdout.trim();
    }
    const root = await mkdtemp(join(tmpdir(), 'autobuilder-old-'));
    await run('sh', ['-c', `git archive ${commit} | tar -x -C ${root}`], { cwd: ROOT });
    await symlink(join(ROOT, 'node_modules'), join(root, 'node_modules'));
    return { root, commit, own: true };
  } catch {
    return null;
  }
}

/** Starts `root`'s bench/server-process.ts (this checkout's or the old code's). */
function startServerAt(root: string, configPath: string): Promise<{ child: ChildProcess; url: string }> {
  const profile = process.env['AUTOBUILDER_PROFILE'];
  const profiling = profile === undefined || profile === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${resolve(profile)}`];
  const child = spawn(process.execPath, [...profiling, '--import', 'tsx', join(root, 'bench', 'server-process.ts'), configPath, SECRET], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((ok, fail) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => line.startsWith('READY ') && ok({ child, url: line.slice(6) }));
    child.once('exit', (code) => fail(new Error(`the server exited with ${code}`)));
  });
}

/** Sends one signed push; resolves with its ack latency in ms (throws unless 202). */
async function push(url: string, payload: Record<string, unknown>): Promise<number> {
  const body = JSON.stringify(payload);
  const at = performance.now();
  const response = await fetch(`${url}/hooks/github`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-github-event': 'push',
      'x-github-delivery': randomUUID(),
      'x-hub-signature-256': await sign(SECRET, body),
    },
    body,
  });
  await response.arrayBuffer();
  if (response.status !== 202) throw new Error(`a push was answered ${response.status}`);
  return performance.now() - at;
}

/** Times `fn` once, in ms. */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const at = performance.now();
  await fn();
  return performance.now() - at;
}

/** Reads a URL to its end; throws unless 200. */
async function read(url: string): Promise<void> {
  const response = await fetch(url);
  await response.arrayBuffer();
  if (response.status !== 200) throw new Error(`${url} answered ${response.status}`);
}

interface Figures {
  idle: Record<'metrics' | 'history' | 'cursor' | 'snapshot', Summary>;
  load: Record<'metrics' | 'history' | 'cursor' | 'snapshot' | 'ack', Summary>;
  finishedPerSecond: number;
  /** this (the sending) process's event-loop delay p99 under load, ms: when high, the figures include the sender's own lag */
  senderLagP99: number;
}

/** One server (new or old code) on its own store of `BUILDS` builds: the figures. */
async function measure(name: string, root: string, old: boolean): Promise<Figures> {
  const { dir, dataDir, configPath, cloneUrl, repo } = await prepareFixtureProject(`bench-store-${name}`, {
    jobConcurrency: 4,
    jobBacklog: 1000,
    retention: { keepPerBranch: 1_000_000, intervalSeconds: 86_400 },
  });
  try {
    await mkdir(dataDir, { recursive: true });
    const middle = fill(join(dataDir, 'autobuilder.db'));
    if (old) toOldSchema(join(dataDir, 'autobuilder.db'));
    const { child, url } = await startServerAt(root, configPath);
    try {
      const sha = repo.head as string;
      const tree = await repo.treeOf(sha);
      const socket = io(url, { path: '/socket.io', transports: ['websocket'] });
      await new Promise<void>((ok) => socket.once('connect', () => ok()));
      const snapshot = () =>
        timed(
          () =>
            new Promise<void>((ok) => {
              socket.once('snapshot', () => ok());
              socket.emit('watch', {});
            }),
        );
      const reads = {
        metrics: () => timed(() => read(`${url}/metrics`)),
        history: () => timed(() => read(`${url}/api/builds?limit=50`)),
        cursor: () => timed(() => read(`${url}/api/builds?limit=50&cursor=${middle}`)),
        snapshot,
      };

      // the one real build: tag v0 of the head; every later tag of it is a cache hit
      await push(url, pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/tags/v0', sha, tree, cloneUrl }));
      for (let waited = 0; ; waited += 250) {
        const response = await fetch(`${url}/api/builds?ref=refs/tags/v0&limit=5`);
        const { builds } = (await response.json()) as { builds: { state: string }[] };
        if (builds.length > 0 && builds.every((b) => b.state !== 'queued' && b.state !== 'running')) break;
        if (waited > 180_000) throw new Error('the first build did not end');
        await new Promise((r) => setTimeout(r, 250));
      }
      await new Promise((r) => setTimeout(r, 1000));

      const idle = {} as Figures['idle'];
      for (const [key, fn] of Object.entries(reads) as [keyof typeof reads, () => Promise<number>][]) {
        const samples: number[] = [];
        for (let i = 0; i < (old ? READS.old : READS.new); i++) samples.push(await fn());
        idle[key] = summarize(samples.slice(old ? 2 : 10));
      }

      // load: 180/s intake-only deliveries + 20/s tag pushes that end at once as cache hits
      const body = JSON.stringify(
        pushPayload({
          owner: 'acme',
          repo: 'no-definitions',
          ref: 'refs/heads/main',
          sha: 'b'.repeat(40),
          cloneUrl: 'https://github.com/acme/no-definitions.git',
        }),
      );
      const senderLag = monitorEventLoopDelay({ resolution: 5 });
      senderLag.enable();
      const started = performance.now();
      const intake = sendDeliveries({
        url,
        body,
        signature: await sign(SECRET, body),
        rate: WEBHOOKS_PER_SECOND - FINISHED_PER_SECOND,
        total: (WEBHOOKS_PER_SECOND - FINISHED_PER_SECOND) * LOAD_SECONDS,
      });
      const tags = (async () => {
        const latencies: Promise<number>[] = [];
        for (let i = 1; i <= FINISHED_PER_SECOND * LOAD_SECONDS; i++) {
          const wait = started + (i * 1000) / FINISHED_PER_SECOND - performance.now();
          if (wait > 1) await new Promise((r) => setTimeout(r, wait));
          // a push not answered 202 (or not at all) is counted, not thrown: the run goes on
          latencies.push(push(url, pushPayload({ owner: 'acme', repo: 'widget', ref: `refs/tags/v${i}`, sha, tree, cloneUrl })).catch(() => NaN));
        }
        return Promise.all(latencies);
      })();
      const underLoad: Record<keyof typeof reads, number[]> = { metrics: [], history: [], cursor: [], snapshot: [] };
      const sampling = (async () => {
        while (performance.now() - started < LOAD_SECONDS * 1000) {
          for (const [key, fn] of Object.entries(reads) as [keyof typeof reads, () => Promise<number>][]) underLoad[key].push(await fn());
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      const [sent, tagResults] = await Promise.all([intake, tags, sampling]);
      senderLag.disable();
      const tagAcks = tagResults.filter((ms) => !Number.isNaN(ms));
      const seconds = (performance.now() - started) / 1000;
      // how many tag builds ended (cache hits) while the load ran
      const ended = ((await (await fetch(`${url}/api/builds?repo=acme/widget&limit=500`)).json()) as { builds: Build[] }).builds.filter(
        (b) => b.ref.startsWith('refs/tags/v') && b.ref !== 'refs/tags/v0' && b.finishedAt !== null,
      ).length;
      socket.close();
      const failed = sent.failed + tagResults.length - tagAcks.length;
      if (failed > 0) console.log(`  ${name}: ${failed} of ${sent.ids.length + tagResults.length} deliveries not acknowledged (not 202, or no answer in 10 s)`);
      return {
        idle,
        load: {
          metrics: summarize(underLoad.metrics),
          history: summarize(underLoad.history),
          cursor: summarize(underLoad.cursor),
          snapshot: summarize(underLoad.snapshot),
          ack: summarize([...sent.latencies, ...tagAcks]),
        },
        finishedPerSecond: ended / seconds,
        senderLagP99: senderLag.percentile(99) / 1e6,
      };
    } finally {
      await stopServerProcess(child);
    }
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Runs the benchmark and prints its figures, new and old side by side. */
export async function benchStore(): Promise<void> {
  console.log(
    `\n## store: ${BUILDS.toLocaleString('en')} builds; reads idle and under ${WEBHOOKS_PER_SECOND} webhooks/s with ${FINISHED_PER_SECOND} builds/s ending (server in its own process)`,
  );
  const baseline = process.env['STORE_BENCH_BASELINE'] || undefined;
  const oldCode = baseline === 'none' ? null : await extractOldCode(baseline);
  try {
    const results: [string, Figures][] = [['new', await measure('new', ROOT, false)]];
    if (baseline === 'none') console.log('  old code path: not measured (STORE_BENCH_BASELINE=none)');
    else if (oldCode === null) console.log(`  old code path: not measured (git could not find ${baseline ?? 'the commit before src/store/sqlite-writer.ts'})`);
    // a chosen baseline already has the current schema; the code before the writer thread had the old one
    else results.push([`old (${oldCode.commit.slice(0, 10)})`, await measure('old', oldCode.root, baseline === undefined)]);
    const labels: Record<string, string> = {
      metrics: 'GET /metrics',
      history: 'GET /api/builds?limit=50 (history page)',
      cursor: 'history page 50,000 builds deep (cursor)',
      snapshot: 'monitor snapshot (watch → snapshot)',
      ack: 'webhook ack',
    };
    for (const phase of ['idle', 'load'] as const) {
      console.log(phase === 'idle' ? '  idle:' : `  under load (${LOAD_SECONDS} s):`);
      for (const key of Object.keys(results[0]?.[1][phase] ?? {})) {
        for (const [name, figures] of results) {
          const s = (figures[phase] as Record<string, Summary>)[key];
          if (s !== undefined) console.log(formatSummary(`  ${name.padEnd(16)} ${labels[key] ?? key}`, s));
        }
      }
    }
    for (const [name, figures] of results) {
      console.log(
        `  ${name}: builds ended ${figures.finishedPerSecond.toFixed(1)}/s during the load; the sender's own event-loop delay p99 ${figures.senderLagP99.toFixed(0)} ms`,
      );
    }
    console.log(
      `  load average (1, 5, 15 min) at the end: ${loadavg()
        .map((l) => l.toFixed(2))
        .join(', ')} on ${availableParallelism()} CPUs`,
    );
    const fresh = results[0]?.[1];
    if (fresh !== undefined) {
      const reads = ['metrics', 'history', 'cursor', 'snapshot'] as const;
      console.log(
        goal(
          'new: /metrics, history pages and monitor snapshot p95 ≤ 20 ms (idle and under load)',
          reads.every((k) => fresh.idle[k].p95 <= 20 && fresh.load[k].p95 <= 20),
        ),
      );
      console.log(goal(`new: webhook ack p99 ≤ 50 ms at ${WEBHOOKS_PER_SECOND}/s with builds ending at ${FINISHED_PER_SECOND}/s`, fresh.load.ack.p99 <= 50));
    }
  } finally {
    if (oldCode?.own === true) await rm(oldCode.root, { recursive: true, force: true }).catch(() => undefined);
  }
}
