/**
 * Issue 6 benchmarks over the real server, Docker and socket.io:
 * - live log latency: a build writes 1,000 timestamped lines a second for 10 s while 50
 *   socket.io viewers (another process) watch /monitor; each line's time from the container
 *   writing it to each viewer receiving it. Goal: p99 ≤ 100 ms.
 * - memory: a build writes a 100 MiB log as fast as it can while the 50 viewers and two SSE
 *   followers of its log are connected; the server process's RSS and heap, sampled every
 *   100 ms, against before.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { Build } from '../src/builds/build.js';
import { startFixtureServer, type FixtureServer } from '../test/support/fixture-server.js';
import { deliver, pushPayload } from '../test/support/webhook-delivery.js';
import type { ViewersReport } from './logs-viewers.js';
import { formatSummary, goal } from './stats.js';

const VIEWERS = 50;
const MiB = 1024 * 1024;

/** Starts the viewer process and resolves once every viewer has its snapshot. */
async function startViewers(
  url: string,
): Promise<{ child: ChildProcessByStdio<Writable, Readable, null>; send(line: string): void; report(): Promise<ViewersReport> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./logs-viewers.ts', import.meta.url).pathname, url, String(VIEWERS)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const next = () =>
    new Promise<string>((resolve, reject) => {
      lines.once('line', resolve);
      child.once('exit', (code) => reject(new Error(`the viewers exited with ${code}`)));
    });
  const ready = await next();
  if (ready !== 'ready') throw new Error(`the viewers said ${ready}`);
  return {
    child,
    send: (line) => child.stdin.write(`${line}\n`),
    async report() {
      const answer = next();
      child.stdin.write('report\n');
      return JSON.parse(await answer) as ViewersReport;
    },
  };
}

/** Pushes `branch` at the fixture's head; resolves with the build once it is queued. */
async function push(f: FixtureServer, branch: string): Promise<Build> {
  const queued = new Promise<Build>((resolve) => {
    const listener = (b: Build) => {
      if (b.ref !== `refs/heads/${branch}`) return;
      f.server.events.off('build.queued', listener);
      resolve(b);
    };
    f.server.events.on('build.queued', listener);
  });
  const response = await deliver(f.server.url, {
    event: 'push',
    secret: f.secret,
    payload: pushPayload({ owner: 'acme', repo: 'widget', ref: `refs/heads/${branch}`, sha: f.repo.head as string, cloneUrl: f.cloneUrl }),
  });
  if (response.status !== 202) throw new Error(`webhook answered ${response.status}`);
  return queued;
}

/** Resolves when build `id` has ended (and its log is closed). */
function finished(f: FixtureServer, id: string): Promise<Build> {
  return new Promise((resolve) => {
    const listener = (b: Build) => {
      if (b.id !== id) return;
      f.server.events.off('build.finished', listener);
      setTimeout(() => resolve(b), 300);
    };
    f.server.events.on('build.finished', listener);
  });
}

/** Live log latency and server memory under a 100 MiB log. */
export async function benchLogs(): Promise<void> {
  console.log(`\n## live logs: container → socket.io viewer latency (${VIEWERS} viewers, 1,000 lines/s for 10 s)`);
  const f = await startFixtureServer('bench-logs', { jobConcurrency: 1 });
  let viewers: Awaited<ReturnType<typeof startViewers>> | null = null;
  try {
    viewers = await startViewers(f.server.url);
    const build = await push(f, 'bench-logs');
    const done = await finished(f, build.id);
    if (done.state !== 'success') throw new Error(`the bench build ended ${done.state}: ${done.description ?? ''}`);
    const report = await viewers.report();
    viewers = null;
    const expected = 10_000 * VIEWERS;
    const { lag } = report;
    console.log(formatSummary('line written in the container → viewer', lag));
    console.log(`  p99 ${lag.p99.toFixed(1)} ms; lines received ${lag.n} of ${expected} (${VIEWERS} viewers × 10,000); left out of batches: ${report.skipped}`);
    console.log(goal('p99 ≤ 100 ms with 50 viewers at 1,000 lines/s', lag.p99 <= 100));
    console.log(goal('every line reached every viewer', lag.n === expected));
  } finally {
    viewers?.child.kill();
    await f.close();
  }

  console.log(`\n## server memory while a 100 MiB log streams (${VIEWERS} socket.io viewers, 2 SSE followers)`);
  const g = await startFixtureServer('bench-flood', { jobConcurrency: 1 });
  viewers = null;
  try {
    viewers = await startViewers(g.server.url);
    global.gc?.();
    const before = process.memoryUsage();
    let peak = { rss: before.rss, heapUsed: before.heapUsed, external: before.external + before.arrayBuffers };
    const sampler = setInterval(() => {
      const m = process.memoryUsage();
      peak = { rss: Math.max(peak.rss, m.rss), heapUsed: Math.max(peak.heapUsed, m.heapUsed), external: Math.max(peak.external, m.external + m.arrayBuffers) };
    }, 100);
    const started = performance.now();
    const build = await push(g, 'bench-flood');
    viewers.send(`sse ${g.server.url}/api/builds/${build.id}/log`);
    viewers.send(`sse ${g.server.url}/api/builds/${build.id}/log`);
    const done = await finished(g, build.id);
    const seconds = (performance.now() - started) / 1000;
    clearInterval(sampler);
    // let the followers drain what is on disk
    await new Promise((r) => setTimeout(r, 2000));
    const report = await viewers.report();
    viewers = null;
    const size = (await fetch(`${g.server.url}/api/builds/${build.id}/log`, { method: 'HEAD' })).headers.get('content-length') ?? '0';
    const mb = (n: number) => `${(n / MiB).toFixed(0)} MiB`;
    console.log(
      `  build ${done.state} in ${seconds.toFixed(1)} s; log ${mb(Number(size))} (${(Number(size) / MiB / seconds).toFixed(1)} MiB/s through the server)`,
    );
    console.log(
      `  server RSS: ${mb(before.rss)} before, ${mb(peak.rss)} peak (+${mb(peak.rss - before.rss)}); heap used ${mb(before.heapUsed)} → ${mb(peak.heapUsed)} peak; buffers peak ${mb(peak.external)}`,
    );
    console.log(
      `  SSE followers: ${report.sse.map((s) => `${mb(s.bytes)}${s.ended ? ' + end' : ' (no end)'}`).join(', ')}; monitor viewers got ${Math.min(...report.linesPerViewer)}–${Math.max(...report.linesPerViewer)} lines each (tails: ${report.skipped} left out)`,
    );
    console.log(goal('server RSS grows < 100 MiB while a 100 MiB log streams', peak.rss - before.rss < 100 * MiB));
    console.log(
      goal('each SSE follower got the whole log and the end', report.sse.length === 2 && report.sse.every((s) => s.ended && s.bytes === Number(size))),
    );
  } finally {
    viewers?.child.kill();
    await g.close();
  }
}
