import { dispatchConformance } from './support/dispatch-conformance.js';
import { startFixtureServer } from './support/fixture-server.js';
import { startRedisServer } from './support/redis-server.js';
import { startTestWorker } from './support/worker-process.js';
import type { RunningWorker } from '../src/worker/start-worker.js';

const API_TOKEN = 'conformance-api-token-0123456789';

dispatchConformance('local', async () => {
  const f = await startFixtureServer('conformance-local', { jobConcurrency: 2, api: { token: API_TOKEN } });
  return { f, workers: null, apiToken: API_TOKEN, close: () => f.close({ graceMs: 0 }) };
});

dispatchConformance('bullmq, two workers', async () => {
  const redis = await startRedisServer({ password: 'conformance-redis-password', persistence: true });
  const tokens = { c1: 'conformance-worker-one-0123456789', c2: 'conformance-worker-two-0123456789' };
  const f = await startFixtureServer('conformance-bullmq', {
    jobConcurrency: 4,
    api: { token: API_TOKEN },
    dispatch: {
      mode: 'bullmq',
      redis: { url: redis.url },
      workers: { c1: { token: tokens.c1 }, c2: { token: tokens.c2 } },
      lockDurationSeconds: 4,
      stalledIntervalSeconds: 2,
      heartbeatTimeoutSeconds: 5,
      affinityWaitSeconds: 5,
    },
  });
  const workers: RunningWorker[] = [];
  for (const [id, token] of Object.entries(tokens)) {
    workers.push(await startTestWorker({ id, token, serverUrl: f.server.url, redisUrl: redis.url, dir: f.dir }));
  }
  return {
    f,
    workers: Object.keys(tokens),
    apiToken: API_TOKEN,
    async close() {
      for (const worker of workers) await worker.close().catch(() => undefined);
      await f.close({ graceMs: 0 });
      await redis.stop();
    },
  };
});
