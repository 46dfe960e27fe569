/**
 * "Faster to start, lighter at rest" benchmark, against the real server in a process of its
 * own, Docker and Btrfs:
 * 1. latency: pushes of a new commit each (with `head_commit.tree_id`, as GitHub sends it),
 *    one after another; webhook → build `running` (its stored `startedAt`) and webhook → its
 *    first container log line (read live from the log stream);
 * 2. memory: RSS of an idle server after its start, from source (tsx), compiled
 *    (`npm run build`, `node dist/main.js`) and as `npm start` runs it (compiled, with the
 *    node flags of its script), then of the latter after
 *    250,000 deliveries of a push nothing builds, closed loop: `BENCH_START_SENDERS` (8)
 *    senders, each sending its next delivery once the previous one is answered, so the server
 *    is measured at the rate it sustains (printed), not behind an ever longer backlog.
 * Goals: running p50 ≤ 75 ms, first log line p50 ≤ 700 ms, idle RSS ≤ 80 MiB, RSS after the
 * deliveries ≤ 150 MiB. `BENCH_START_DELIVERIES` and `BENCH_START_BUILDS` change the counts
 * (`BENCH_START_BUILDS=0` skips the latency phase, `BENCH_START_DELIVERIES=0` the deliveries);
 * `BENCH_START_IDLE_RUNS` (1) starts the server as npm start that many times and also prints
 * the median idle RSS and the load average (RSS at rest moves by a few MiB from run to run).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { sign } from '@octokit/webhooks-methods';
import type { BuildView } from '../src/http/build-view.js';
import { deliver, pushPayload } from '../test/support/webhook-delivery.js';
import { prepareFixtureProject, startServerProcess, stopServerProcess } from './server-process.js';
import { formatSummary, goal, summarize } from './stats.js';
import { sendDeliveries, type DeliveriesSent } from './webhook-sender.js';

const SECRET = 'start-secret';
const ROOT = resolve(import.meta.dirname, '..');
const run = promisify(execFile);

/** RSS of process `pid` in MiB, from /proc (proc(5)). */
async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) / 1024;
}

/** Polls the build API every 2 ms until a build of `sha` is listed; resolves with its id. */
async function buildOf(url: string, sha: string): Promise<string> {
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 2))) {
    const { builds } = (await (await fetch(`${url}/api/builds?repo=acme/widget&limit=5`)).json()) as { builds: BuildView[] };
    const found = builds.find((b) => b.sha === sha);
    if (found !== undefined) return found.id;
  }
  throw new Error(`no build of ${sha} within 30 s`);
}

/** Follows the build's log; resolves with `Date.now()` when its first line that is not the server's own (`[autobuilder] …`) arrives. */
async function firstContainerLine(url: string, id: string): Promise<number> {
  const response = await fetch(`${url}/api/builds/${id}/log?follow=1`);
  if (response.body === null) throw new Error('no log body');
  const decoder = new TextDecoder();
  let text = '';
  for await (const chunk of response.body) {
    text += decoder.decode(chunk as Uint8Array, { stream: true });
    const lines = text.split('\n');
    text = lines.pop() ?? '';
    if (lines.some((line) => line !== '' && !line.startsWith('[autobuilder]'))) {
      const at = Date.now();
      void response.body.cancel().catch(() => undefined);
      return at;
    }
  }
  throw new Error(`the log of ${id} ended without a line of the container`);
}

/** Waits until build `id` has ended; resolves with it. */
async function ended(url: string, id: string): Promise<BuildView> {
  for (;;) {
    const build = (await (await fetch(`${url}/api/builds/${id}`)).json()) as BuildView;
    if (build.state !== 'queued' && build.state !== 'running') return build;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Phase 1: webhook → running and → first container log line, over `count` pushes of new commits. */
async function benchLatency(count: number): Promise<void> {
  const project = await prepareFixtureProject('bench-start', {});
  const { child, url } = await startServerProcess(project.configPath, SECRET);
  const running: number[] = [];
  const firstLine: number[] = [];
  try {
    // one build first: mirrors, lineage and the image id are warm as on a server that has built before
    for (let i = -1; i < count; i++) {
      const sha = await project.repo.commit({ 'message.txt': `start benchmark ${i}\n` });
      const tree = await project.repo.treeOf(sha);
      const payload = pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, tree, cloneUrl: project.cloneUrl });
      const sentAt = Date.now();
      const response = await deliver(url, { event: 'push', payload, secret: SECRET });
      if (response.status !== 202) throw new Error(`push answered ${response.status}`);
      const id = await buildOf(url, sha);
      const lineAt = await firstContainerLine(url, id);
      const build = await ended(url, id);
      if (build.state !== 'success' || build.startedAt === null) throw new Error(`build ${id} ended ${build.state}`);
      if (i < 0) continue;
      running.push(Date.parse(build.startedAt) - sentAt);
      firstLine.push(lineAt - sentAt);
    }
  } finally {
    await stopServerProcess(child);
  }
  const r = summarize(running);
  const l = summarize(firstLine);
  console.log(formatSummary('webhook → build running (ms)', r));
  console.log(formatSummary('webhook → first container log line (ms)', l));
  console.log(goal('webhook → running p50 ≤ 75 ms', r.p50 <= 75));
  console.log(goal('webhook → first container log line p50 ≤ 700 ms', l.p50 <= 700));
}

/** Starts `node <args>` with the config module `configPath` as AUTOBUILDER_CONFIG; resolves once it logs `listening`. */
function startMain(args: readonly string[], configPath: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [...args], {
    cwd: ROOT,
    env: { ...process.env, AUTOBUILDER_CONFIG: configPath },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((ok, fail) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const parsed = JSON.parse(line) as { msg?: string; url?: string };
      if (parsed.msg === 'listening' && parsed.url !== undefined) ok({ child, url: parsed.url });
    });
    child.once('exit', (code) => fail(new Error(`the server exited with ${code}`)));
  });
}

/** RSS of the server started by `args` after its start has settled (2 s), in MiB; returns the server. */
async function idleRss(label: string, args: readonly string[], configPath: string): Promise<{ child: ChildProcess; url: string; rss: number }> {
  const started = await startMain(args, configPath);
  await new Promise((r) => setTimeout(r, 2000));
  const rss = await rssOf(started.child.pid as number);
  console.log(`${label.padEnd(44)} ${rss.toFixed(1)} MiB`);
  return { ...started, rss };
}

/** The node flags of `npm start` (package.json: `node <flags> dist/main.js`), so that the benchmark measures what production runs. */
async function startFlags(): Promise<string[]> {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const words = (pkg.scripts['start'] ?? '').split(/\s+/);
  return words[0] === 'node' ? words.slice(1, words.indexOf('dist/main.js')) : [];
}

/** Phase 2: idle RSS from source and compiled, then RSS of the compiled server after `deliveries` deliveries. */
async function benchMemory(deliveries: number): Promise<void> {
  const project = await prepareFixtureProject('bench-start-memory', { logLevel: 'info' });
  const dist = join(project.dir, 'dist');
  // the production build (npm run build), into the benchmark's own directory
  await run('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', dist], { cwd: ROOT });
  await cp(join(ROOT, 'src', 'monitor', 'static'), join(dist, 'monitor', 'static'), { recursive: true });
  const configPath = join(project.dir, 'config.mjs');
  const config = JSON.parse(await readFile(project.configPath, 'utf8')) as Record<string, unknown>;
  await writeFile(configPath, `export default ${JSON.stringify({ ...config, github: { webhookSecret: SECRET } })};\n`);

  const fromSource = await idleRss('idle RSS, from source (tsx src/main.ts)', ['--import', 'tsx', join(ROOT, 'src', 'main.ts')], configPath);
  await stopServerProcess(fromSource.child);
  const plain = await idleRss('idle RSS, compiled (node dist/main.js)', [join(dist, 'main.js')], configPath);
  await stopServerProcess(plain.child);
  const flags = await startFlags();
  const label = `idle RSS, as npm start (node ${flags.join(' ')} dist/main.js)`;
  const runs = Math.max(1, Number(process.env['BENCH_START_IDLE_RUNS'] ?? 1));
  const idle: number[] = [];
  for (let i = 1; i < runs; i++) {
    const extra = await idleRss(label, [...flags, join(dist, 'main.js')], configPath);
    idle.push(extra.rss);
    await stopServerProcess(extra.child);
  }
  const compiled = await idleRss(label, [...flags, join(dist, 'main.js')], configPath);
  idle.push(compiled.rss);
  const median = [...idle].sort((a, b) => a - b)[Math.floor(idle.length / 2)] ?? compiled.rss;
  if (runs > 1) {
    const load = loadavg()
      .map((l) => l.toFixed(2))
      .join(' ');
    console.log(`${`idle RSS, as npm start, median of ${runs}`.padEnd(44)} ${median.toFixed(1)} MiB  (load average ${load})`);
  }
  if (deliveries === 0) {
    console.log(goal('idle RSS ≤ 80 MiB (as npm start)', median <= 80));
    await stopServerProcess(compiled.child);
    return;
  }
  try {
    const body = JSON.stringify(
      pushPayload({
        owner: 'acme',
        repo: 'no-definitions',
        ref: 'refs/heads/main',
        sha: 'b'.repeat(40),
        cloneUrl: 'https://github.com/acme/no-definitions.git',
      }),
    );
    const pid = compiled.child.pid as number;
    const senders = Number(process.env['BENCH_START_SENDERS'] ?? 8);
    // RSS once a second: the peak, and a line every fifth of the run (growth shows as a trend)
    let peak = 0;
    let nextReport = 1;
    const startedAt = performance.now();
    const progress: DeliveriesSent = { latencies: [], ids: [], acknowledged: [], failed: 0 };
    const sending = sendDeliveries({ url: compiled.url, body, signature: await sign(SECRET, body), concurrency: senders, total: deliveries, into: progress });
    const sampler = setInterval(() => {
      void rssOf(pid).then((rss) => {
        peak = Math.max(peak, rss);
        const done = progress.acknowledged.length + progress.failed;
        if (done < (nextReport * deliveries) / 5) return;
        nextReport++;
        const rate = done / ((performance.now() - startedAt) / 1000);
        console.log(`  after ${String(done).padStart(7)} deliveries: RSS ${rss.toFixed(1)} MiB (${rate.toFixed(0)}/s so far)`);
      });
    }, 1000);
    const sent = await sending;
    const seconds = (performance.now() - startedAt) / 1000;
    clearInterval(sampler);
    await new Promise((r) => setTimeout(r, 2000));
    const after = await rssOf(pid);
    console.log(
      `${`RSS after ${deliveries} deliveries (as npm start)`.padEnd(44)} ${after.toFixed(1)} MiB  (peak ${Math.max(peak, after).toFixed(1)}; ${sent.acknowledged.length} acknowledged, ${sent.failed} failed; ${senders} senders closed loop: ${(deliveries / seconds).toFixed(0)}/s)`,
    );
    console.log(formatSummary('  ack latency (ms)', summarize(sent.latencies)));
    console.log(goal('idle RSS ≤ 80 MiB (as npm start)', median <= 80));
    console.log(goal(`RSS after ${deliveries} deliveries ≤ 150 MiB`, after <= 150));
  } finally {
    await stopServerProcess(compiled.child);
  }
}

/** `npm run bench -- start`: both phases. */
export async function benchStart(): Promise<void> {
  console.log('\n== start: webhook → running, idle and loaded RSS ==');
  const builds = Number(process.env['BENCH_START_BUILDS'] ?? 20);
  if (builds > 0) await benchLatency(builds);
  await benchMemory(Number(process.env['BENCH_START_DELIVERIES'] ?? 250_000));
}
