import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BuildView } from '../src/http/build-view.js';
import type { RunningWorker } from '../src/worker/start-worker.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { startRedisServer, type RunningRedis } from './support/redis-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';
import { startTestWorker } from './support/worker-process.js';

const API_TOKEN = 'workers-api-token-0123456789';
const TOKENS = { w1: 'worker-one-token-0123456789', w2: 'worker-two-token-0123456789' } as const;

describe('build workers over BullMQ on Redis', () => {
  let redis: RunningRedis;
  let f: FixtureServer;
  const workers: RunningWorker[] = [];

  const startOne = async (id: keyof typeof TOKENS) => {
    const worker = await startTestWorker({ id, token: TOKENS[id], serverUrl: f.server.url, redisUrl: redis.url, dir: f.dir });
    workers.push(worker);
    return worker;
  };

  before(async () => {
    redis = await startRedisServer({ password: 'redis-test-password', persistence: true });
    f = await startFixtureServer('workers', {
      jobConcurrency: 4,
      api: { token: API_TOKEN },
      dispatch: {
        mode: 'bullmq',
        redis: { url: redis.url },
        workers: { w1: { token: TOKENS.w1 }, w2: { token: TOKENS.w2 } },
        lockDurationSeconds: 2,
        stalledIntervalSeconds: 1,
        heartbeatTimeoutSeconds: 3,
        affinityWaitSeconds: 2,
      },
    });
  });
  after(async () => {
    for (const worker of workers) await worker.close().catch(() => undefined);
    await f.close({ graceMs: 0 });
    await redis.stop();
  });

  test('a push builds on a worker: its log, artifact and statuses reach the server', async () => {
    await startOne('w1');
    const sha = f.repo.head as string;
    const response = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl: f.cloneUrl }),
    });
    assert.equal(response.status, 202);
    const build = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/main');
    assert.equal(build.state, 'success', build.description ?? '');
    assert.equal((build as BuildView & { worker: string | null }).worker, 'w1');
    const log = await (await fetch(build.logUrl)).text();
    assert.match(log, /dispatched to worker w1/);
    assert.match(log, /checked out/);
    const [artifact] = build.artifacts;
    assert.ok(artifact);
    const body = Buffer.from(await (await fetch(artifact.url)).arrayBuffer());
    assert.equal(body.length, artifact.size);
    const listed = (await (await fetch(`${f.server.url}/api/workers`)).json()) as { mode: string; workers: { id: string; live: boolean }[] };
    assert.equal(listed.mode, 'bullmq');
    assert.deepEqual(
      listed.workers.map((w) => [w.id, w.live]),
      [['w1', true]],
    );
  });

  test('two workers share a batch: every build runs once, on one of them, and both take some', async () => {
    await startOne('w2');
    const shas: string[] = [];
    for (let i = 0; i < 6; i++) {
      const sha = await f.repo.commit({ 'message.txt': `batch ${i}\n` }, `batch ${i}`);
      const response = await deliver(f.server.url, {
        event: 'push',
        secret: f.secret,
        payload: pushPayload({ owner: 'acme', repo: 'widget', ref: `refs/heads/batch/${i}`, sha, cloneUrl: f.cloneUrl }),
      });
      assert.equal(response.status, 202);
      shas.push(sha);
    }
    const builds: BuildView[] = [];
    for (const [i, sha] of shas.entries()) builds.push(await f.waitForBuild((b) => b.sha === sha && b.ref === `refs/heads/batch/${i}`, 120_000));
    assert.deepEqual(
      builds.map((b) => b.state),
      Array.from({ length: 6 }, () => 'success'),
    );
    const ran = new Set(builds.map((b) => (b as BuildView & { worker: string | null }).worker));
    assert.deepEqual(
      [...ran].map(String).sort((x, y) => x.localeCompare(y)),
      ['w1', 'w2'],
    );
  });

  test('an upload cut off midway leaves nothing stored and nothing in the temp directory of the artifact store', async () => {
    const token = TOKENS.w1;
    // an attempt that the server follows: a long build, held on w1
    const sha = await f.repo.commit({ 'message.txt': 'cut upload\n' }, 'cut upload');
    await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/long', sha, cloneUrl: f.cloneUrl }),
    });
    let running: BuildView | undefined;
    for (let i = 0; i < 400 && running?.state !== 'running'; i++) {
      running = (await f.builds()).find((b) => b.sha === sha && b.ref === 'refs/heads/long');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(running?.state === 'running');
    const worker = (running as BuildView & { worker: string | null }).worker;
    const bytes = Buffer.alloc(256 * 1024, 7);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes);
        setTimeout(() => controller.error(new Error('the connection dropped')), 100);
      },
    });
    const cut = await fetch(`${f.server.url}/api/workers/builds/${running.id}/artifacts/never.txt?attempt=1`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${worker === 'w2' ? TOKENS.w2 : token}`, 'x-autobuilder-sha256': createHash('sha256').update(bytes).digest('hex') },
      body,
      duplex: 'half',
    } as RequestInit).catch((err: unknown) => err);
    assert.ok(cut instanceof Error, 'the client saw its upload fail');
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await readdir(join(f.dir, 'data', 'artifacts', 'tmp')).catch(() => []), []);
    assert.equal((await fetch(`${f.server.url}/api/artifacts/${createHash('sha256').update(bytes).digest('hex')}`)).status, 404);
    const cancelled = await fetch(`${f.server.url}/api/builds/${running.id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${API_TOKEN}` } });
    assert.equal(cancelled.status, 200);
  });
});

describe('a worker over TLS to a password-protected Redis', () => {
  test('builds through rediss:// with a private CA', async () => {
    const redis = await startRedisServer({ password: 'tls-redis-password', tls: true });
    const f = await startFixtureServer('workers-tls', {
      dispatch: { mode: 'bullmq', redis: { url: redis.url, caPath: redis.caPath }, workers: { t1: { token: TOKENS.w1 } } },
    });
    let worker: RunningWorker | undefined;
    try {
      worker = await startTestWorker({
        id: 't1',
        token: TOKENS.w1,
        serverUrl: f.server.url,
        redisUrl: redis.url,
        dir: f.dir,
        more: { redis: { url: redis.url, ...(redis.caPath === undefined ? {} : { caPath: redis.caPath }) } },
      });
      assert.match(redis.url, /^rediss:\/\//);
      const sha = f.repo.head as string;
      const response = await deliver(f.server.url, {
        event: 'push',
        secret: f.secret,
        payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl: f.cloneUrl }),
      });
      assert.equal(response.status, 202);
      const build = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/main');
      assert.equal(build.state, 'success', build.description ?? '');
      assert.equal((build as BuildView & { worker: string | null }).worker, 't1');
    } finally {
      await worker?.close();
      await f.close({ graceMs: 0 });
      await redis.stop();
    }
  });
});
