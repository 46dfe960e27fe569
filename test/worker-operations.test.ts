import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Build } from '../src/builds/build.js';
import { createLogger } from '../src/logger.js';
import { startWorker, type RunningWorker } from '../src/worker/start-worker.js';
import { loadWorkerConfig } from '../src/worker/worker-config.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { startRedisServer, type RunningRedis } from './support/redis-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

const TOKENS = { w1: 'worker-one-token-0123456789', w2: 'worker-two-token-0123456789' } as const;

/** Parses the Prometheus text format into `name{labels}` → value (comments skipped). */
function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

describe('operating build workers: metrics', () => {
  let redis: RunningRedis;
  let f: FixtureServer;
  const workers: RunningWorker[] = [];

  const startOne = async (id: keyof typeof TOKENS, more: { labels?: string[]; capacity?: number; heartbeatSeconds?: number } = {}) => {
    const config = loadWorkerConfig(
      {
        id,
        serverUrl: f.server.url,
        token: TOKENS[id],
        redis: { url: redis.url },
        labels: more.labels ?? [],
        capacity: more.capacity ?? 1,
        dataDir: join(f.dir, `worker-${id}`),
        docker: { network: 'none' },
        heartbeatSeconds: more.heartbeatSeconds ?? 0.5,
        logLevel: 'silent',
      },
      {},
    );
    const worker = await startWorker(config, { log: createLogger({ level: 'silent' }), version: '9.8.7-test' });
    workers.push(worker);
    return worker;
  };

  const scrape = async (): Promise<Map<string, number>> => parseMetrics(await (await fetch(`${f.server.url}/metrics`)).text());
  const value = (metrics: Map<string, number>, name: string): number => {
    const found = metrics.get(name);
    assert.ok(found !== undefined, `${name} is exposed`);
    return found;
  };

  let version = 0;
  /** Pushes `branch` at a new commit (a new tree: no cache hit); resolves with the id of the build it queued. */
  const push = async (branch: string): Promise<string> => {
    version += 1;
    const sha = await f.repo.commit({ 'message.txt': `version ${version}\n` }, `version ${version}`);
    const queued = new Promise<string>((resolve) => {
      const listener = (b: Build) => {
        if (b.ref !== `refs/heads/${branch}` || b.sha !== sha) return;
        f.server.events.off('build.queued', listener);
        resolve(b.id);
      };
      f.server.events.on('build.queued', listener);
    });
    const response = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: `refs/heads/${branch}`, sha, cloneUrl: f.cloneUrl }),
    });
    assert.equal(response.status, 202);
    return queued;
  };

  before(async () => {
    redis = await startRedisServer({ password: 'redis-test-password' });
    f = await startFixtureServer('worker-operations', {
      jobConcurrency: 4,
      dispatch: {
        mode: 'bullmq',
        redis: { url: redis.url },
        workers: { w1: { token: TOKENS.w1 }, w2: { token: TOKENS.w2 } },
        lockDurationSeconds: 2,
        stalledIntervalSeconds: 1,
        heartbeatTimeoutSeconds: 3,
        affinityWaitSeconds: 1,
      },
    });
    await startOne('w1', { labels: ['arm64', 'big'], capacity: 2 });
  });
  after(async () => {
    for (const worker of workers) await worker.close().catch(() => undefined);
    await f.close({ graceMs: 0 });
    await redis.stop();
  });

  test('/metrics shows each worker live with its capacity, running builds and heartbeat age, then builds by worker and the dispatch latency', async () => {
    const idle = await scrape();
    assert.equal(value(idle, 'autobuilder_worker_live{worker="w1"}'), 1);
    assert.equal(value(idle, 'autobuilder_worker_capacity{worker="w1"}'), 2);
    assert.equal(value(idle, 'autobuilder_worker_running_builds{worker="w1"}'), 0);
    assert.ok(value(idle, 'autobuilder_worker_last_heartbeat_age_seconds{worker="w1"}') < 2);
    assert.equal(idle.get('autobuilder_worker_live{worker="w2"}'), undefined, 'a worker never heard of is not listed');
    assert.equal(value(idle, 'autobuilder_dispatch_latency_seconds_count'), 0);

    const started = new Promise<void>((resolve) => {
      const listener = (b: Build) => {
        if (b.ref !== 'refs/heads/slow') return;
        f.server.events.off('build.started', listener);
        resolve();
      };
      f.server.events.on('build.started', listener);
    });
    const id = await push('slow');
    await started;
    // the worker's next heartbeat names the build it runs
    for (let i = 0; i < 40 && (await scrape()).get('autobuilder_worker_running_builds{worker="w1"}') !== 1; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(value(await scrape(), 'autobuilder_worker_running_builds{worker="w1"}'), 1);
    const build = await f.waitForBuild((b) => b.id === id);
    assert.equal(build.state, 'success', build.description ?? '');
    assert.equal(build.worker, 'w1');

    const m = await scrape();
    assert.equal(value(m, 'autobuilder_worker_builds_total{worker="w1",state="success"}'), 1);
    assert.equal(value(m, 'autobuilder_dispatch_latency_seconds_count'), 1);
    const latency = value(m, 'autobuilder_dispatch_latency_seconds_sum');
    assert.ok(latency > 0 && latency < 10, `dispatch latency ${latency} s`);
  });
});
