/**
 * Issue 5 load test: 200 signed push deliveries per second for 30 s on loopback, sent open
 * loop (each on schedule, whatever the answers), against the real server. Every delivery
 * asks for a build of a repository with no build definition, so the whole intake path
 * runs (signature, parse, durable inbox, hand-on) without starting 6,000 containers.
 * The server runs in a process of its own, so the load generator does not share its event
 * loop. Reports lost deliveries (not acknowledged, or acknowledged but not in the inbox
 * after the server stopped) and the acknowledgement latency. Goal: zero lost, ack p99 ≤ 50 ms.
 */
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { sign } from '@octokit/webhooks-methods';
import { createSqliteBuildStore } from '../src/store/index.js';
import { makeTestDir } from '../test/support/data-dir.js';
import { pushPayload } from '../test/support/webhook-delivery.js';
import { startServerProcess, stopServerProcess } from './server-process.js';
import { formatSummary, goal, summarize } from './stats.js';
import { sendDeliveries } from './webhook-sender.js';

const SECRET = 'load-secret';

/** Runs the load test and prints its figures. */
export async function benchLoad(options: { rate?: number; seconds?: number } = {}): Promise<void> {
  const rate = options.rate ?? 200;
  const seconds = options.seconds ?? 30;
  console.log(`\n## webhook intake: ${rate} signed deliveries/s for ${seconds} s on loopback`);
  const dir = await makeTestDir('bench-load');
  const dataDir = join(dir, 'data');
  const configPath = join(dir, 'config.json');
  const configRepository = { path: resolve(import.meta.dirname, '..', 'test', 'fixtures', 'config-repo') };
  await writeFile(configPath, JSON.stringify({ dataDir, listen: { host: '127.0.0.1', port: 0 }, configRepository, logLevel: 'silent' }));
  const { child, url } = await startServerProcess(configPath, SECRET);
  try {
    const body = JSON.stringify(
      pushPayload({
        owner: 'acme',
        repo: 'no-definitions',
        ref: 'refs/heads/main',
        sha: 'a'.repeat(40),
        cloneUrl: 'https://github.com/acme/no-definitions.git',
      }),
    );
    const signature = await sign(SECRET, body);
    const total = rate * seconds;
    const start = performance.now();
    const { latencies, ids, acknowledged, failed } = await sendDeliveries({ url, body, signature, rate, total });
    const elapsed = (performance.now() - start) / 1000;
    await stopServerProcess(child);
    const store = createSqliteBuildStore({ path: join(dataDir, 'autobuilder.db') });
    const stored = ids.filter((id) => store.getDelivery(id)?.outcome === 'accepted').length;
    // lost: refused or failed, or acknowledged and then not found in the inbox
    const lost = failed + acknowledged.filter((id) => store.getDelivery(id)?.outcome !== 'accepted').length;
    store.close();
    const s = summarize(latencies);
    console.log(
      `  sent ${total} in ${elapsed.toFixed(1)} s (${(total / elapsed).toFixed(0)}/s); acknowledged 202: ${latencies.length}; failed: ${failed}; in the inbox: ${stored}`,
    );
    console.log(formatSummary('ack latency (202)', s));
    console.log(goal('zero lost deliveries', lost === 0));
    console.log(goal('ack p99 ≤ 50 ms', s.p99 <= 50));
  } finally {
    await stopServerProcess(child);
  }
}
