/**
 * Issue 10 benchmark: hostile builds and hostile readers against the real server (in a
 * process of its own), Docker and Btrfs, while 50 signed webhooks a second arrive.
 * Phases, measured side by side in one run:
 * 1. idle: the webhooks alone (the baseline of the ratios);
 * 2. builds: three builds of one push run at once, one printing 1 GiB without a newline,
 *    one printing 1 GiB in 1 KiB lines (each as fast as `builds.maxOutputBytesPerSecond`,
 *    default 8 MiB/s, lets it), one writing to its workspace until its 64 MiB disk quota
 *    stops it;
 * 3. readers: 10 server-sent-event clients read a log whose one line is 64 MiB, five times.
 * Reports the server's peak RSS (VmHWM) and RSS at the end of each phase, webhook ack
 * latency per phase, and lost deliveries (not acknowledged, or not in the inbox after the
 * server stopped). Goals: RSS < 300 MB, ack p99 ≤ 50 ms, 0 lost.
 */
import { randomUUID } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sign } from '@octokit/webhooks-methods';
import type { BuildView } from '../src/http/build-view.js';
import { createSqliteBuildStore } from '../src/store/index.js';
import { readEvents } from '../test/support/event-stream.js';
import { pushPayload } from '../test/support/webhook-delivery.js';
import { prepareFixtureProject, startServerProcess, stopServerProcess } from './server-process.js';
import { formatSummary, goal, summarize } from './stats.js';
import { sendDeliveries, type DeliveriesSent } from './webhook-sender.js';

const SECRET = 'hostile-secret';
const RATE = 50;
const MiB = 1024 * 1024;

/** RSS now and at its peak (VmHWM) of process `pid`, in MiB, from /proc (proc(5)). */
async function memoryOf(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 };
}

/** Signed deliveries of a push of a repository without definitions (the whole intake path, no container) at `RATE` a second until `until` settles. */
async function sendWebhooks(url: string, until: Promise<unknown>): Promise<DeliveriesSent> {
  const body = JSON.stringify(
    pushPayload({ owner: 'acme', repo: 'no-definitions', ref: 'refs/heads/main', sha: 'b'.repeat(40), cloneUrl: 'https://github.com/acme/no-definitions.git' }),
  );
  return sendDeliveries({ url, body, signature: await sign(SECRET, body), rate: RATE, until });
}

/** Polls the build API until every build of `ref` has ended; resolves with them. */
async function buildsOf(url: string, ref: string, count: number): Promise<BuildView[]> {
  for (;;) {
    const response = await fetch(`${url}/api/builds?repo=acme/widget&ref=${encodeURIComponent(ref)}&limit=50`);
    const { builds } = (await response.json()) as { builds: BuildView[] };
    if (builds.length >= count && builds.every((b) => b.state !== 'queued' && b.state !== 'running')) return builds;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Reads a build's log over server-sent events to its end; resolves with the bytes of lines received. */
async function readLog(url: string, id: string): Promise<number> {
  const response = await fetch(`${url}/api/builds/${id}/log`, { headers: { accept: 'text/event-stream' } });
  if (response.body === null) throw new Error('no body');
  let bytes = 0;
  for await (const event of readEvents(response.body)) {
    if (event.event === 'log') bytes += event.data.length;
    if (event.event === 'end') break;
  }
  return bytes;
}

/** Runs the benchmark and prints its figures. */
export async function benchHostile(): Promise<void> {
  console.log(`\n## hostile builds and readers, ${RATE} signed webhooks/s throughout (server in its own process)`);
  const { dir, dataDir, configPath, cloneUrl, repo } = await prepareFixtureProject('bench-hostile', {
    jobConcurrency: 3,
    // the whole GiB flows through the server (the default cap would stop each at 256 MiB)
    builds: { maxLogBytes: 2 * 1024 * MiB, diskQuotaMiB: 64, diskReserveMiB: 256 },
  });
  const { child, url } = await startServerProcess(configPath, SECRET);
  const pid = child.pid as number;
  const phases: { name: string; latencies: number[]; rss: number; seconds: number }[] = [];
  const all = { ids: [] as string[], acknowledged: [] as string[], failed: 0 };
  async function phase(name: string, work: Promise<unknown>): Promise<void> {
    const started = performance.now();
    const sent = await sendWebhooks(url, work);
    await work;
    all.ids.push(...sent.ids);
    all.acknowledged.push(...sent.acknowledged);
    all.failed += sent.failed;
    phases.push({ name, latencies: sent.latencies, rss: (await memoryOf(pid)).rss, seconds: (performance.now() - started) / 1000 });
  }
  try {
    // the start's own work (retention pass, first compilations) settles before anything is measured
    await new Promise((r) => setTimeout(r, 3000));
    const idleRss = (await memoryOf(pid)).rss;
    await phase('idle', new Promise((r) => setTimeout(r, 5000)));

    const ref = 'refs/heads/bench/hostile';
    const push = JSON.stringify(pushPayload({ owner: 'acme', repo: 'widget', ref, sha: repo.head as string, cloneUrl }));
    const pushed = await fetch(`${url}/hooks/github`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'push',
        'x-github-delivery': randomUUID(),
        'x-hub-signature-256': await sign(SECRET, push),
      },
      body: push,
    });
    if (pushed.status !== 202) throw new Error(`the push was answered ${pushed.status}`);
    const builds = buildsOf(url, ref, 3);
    await phase('3 hostile builds', builds);
    for (const b of await builds) console.log(`  build ${b.context}: ${b.state}: ${b.description ?? ''}`);

    // a log whose one line is 64 MiB (as a writer before lines were cut could leave it)
    const [victim] = await builds;
    if (victim === undefined) throw new Error('no build');
    await writeFile(join(dataDir, 'logs', `${victim.id}.log`), Buffer.concat([Buffer.alloc(64 * MiB, 'y'), Buffer.from('\n')]));
    // five rounds of ten readers, for enough webhooks in the phase to tell a p99
    const readers = (async () => {
      const got: number[] = [];
      for (let round = 0; round < 5; round++) got.push(...(await Promise.all(Array.from({ length: 10 }, () => readLog(url, victim.id)))));
      return got;
    })();
    await phase('10 SSE readers of a 64 MiB line, 5 rounds', readers);
    const received = await readers;

    const { peak } = await memoryOf(pid);
    await stopServerProcess(child);
    const store = createSqliteBuildStore({ path: join(dataDir, 'autobuilder.db') });
    const lost = all.failed + all.acknowledged.filter((id) => store.getDelivery(id)?.outcome !== 'accepted').length;
    store.close();

    const baseline = summarize(phases[0]?.latencies ?? []);
    console.log(`  server RSS idle ${idleRss.toFixed(0)} MiB, peak (VmHWM) ${peak.toFixed(0)} MiB`);
    for (const p of phases) {
      const s = summarize(p.latencies);
      console.log(formatSummary(`ack during ${p.name} (${p.seconds.toFixed(1)} s)`, s));
      console.log(`    p99 ${(s.p99 / baseline.p99).toFixed(2)}× idle; RSS at its end ${p.rss.toFixed(0)} MiB`);
    }
    console.log(`  each SSE reader got ${Math.max(...received)} bytes of events for the 64 MiB line (cut at 64 KiB)`);
    console.log(`  deliveries sent ${all.ids.length}, acknowledged ${all.acknowledged.length}, lost ${lost}`);
    console.log(goal('server RSS peak < 300 MB', peak * MiB < 300e6));
    console.log(
      goal(
        'webhook ack p99 ≤ 50 ms in every phase',
        phases.every((p) => summarize(p.latencies).p99 <= 50),
      ),
    );
    console.log(goal('zero lost deliveries', lost === 0));
  } finally {
    await stopServerProcess(child);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}
