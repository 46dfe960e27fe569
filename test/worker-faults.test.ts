import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Worker, type Job } from 'bullmq';
import Docker from 'dockerode';
import { Redis } from 'ioredis';
import { createAttemptStreamWriter } from '../src/dispatch/attempt-stream.js';
import { logStreamKey, workerQueueName, type BuildJob } from '../src/dispatch/protocol.js';
import { toRedisOptions } from '../src/dispatch/redis-connection.js';
import type { BuildView } from '../src/http/build-view.js';
import { BUILD_ID_LABEL } from '../src/runner/index.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import type { RecordedRequest } from './support/github-stand-in.js';
import { startRedisServer, type RunningRedis } from './support/redis-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';
import { spawnWorkerProcess, type WorkerProcess } from './support/worker-process.js';

const TOKENS: Record<string, string> = {
  k1: 'fault-worker-one-0123456789',
  k2: 'fault-worker-two-0123456789',
  k3: 'fault-worker-three-0123456789',
  arm: 'fault-worker-arm-0123456789',
  rogue: 'fault-worker-rogue-0123456789',
};
const LOCK_SECONDS = 3;
const STALLED_SECONDS = 1;
const docker = new Docker({ socketPath: '/var/run/docker.sock' });
const workerOf = (b: BuildView) => (b as BuildView & { worker: string | null }).worker;

describe('build workers: faults, draining, routing and what the server trusts', () => {
  let redis: RunningRedis;
  let f: FixtureServer;
  const processes = new Map<string, WorkerProcess>();

  const spawnWorker = async (id: string, labels: string[] = []) => {
    const worker = await spawnWorkerProcess({
      id,
      serverUrl: f.server.url,
      token: TOKENS[id] ?? '',
      redis: { url: redis.url },
      labels,
      capacity: 1,
      dataDir: join(f.dir, `worker-${id}`),
      docker: { network: 'none' },
      heartbeatSeconds: 0.5,
    });
    processes.set(id, worker);
    return worker;
  };
  const push = async (ref: string, files: Record<string, string> = {}) => {
    const sha = Object.keys(files).length > 0 ? await f.repo.commit(files, `for ${ref}`) : await f.repo.commitEmpty(`for ${ref} ${Date.now()}`);
    const response = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref, sha, cloneUrl: f.cloneUrl }),
    });
    assert.equal(response.status, 202);
    return sha;
  };
  const until = async (what: string, match: (b: BuildView) => boolean, timeoutMs = 60_000): Promise<BuildView> => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const found = (await f.builds()).find(match);
      if (found !== undefined) return found;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  const runningWithOutput = async (sha: string, ref: string, text: RegExp) => {
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const build = (await f.builds()).find((b) => b.sha === sha && b.ref === ref && b.state === 'running');
      if (build !== undefined && text.test(await (await fetch(build.logUrl)).text())) return build;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${ref} never ran with ${String(text)}`);
  };
  const containersOf = async (buildId: string) => docker.listContainers({ all: true, filters: { label: [`${BUILD_ID_LABEL}=${buildId}`] } });

  /** Heartbeats as the test worker `rogue` (labels: rogue), every 0.5 s until the interval is cleared. */
  const beatAsRogue = async (): Promise<NodeJS.Timeout> => {
    const heartbeat = () =>
      fetch(`${f.server.url}/api/workers/heartbeat`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKENS['rogue'] ?? ''}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'rogue', host: 'rogue', labels: ['rogue'], capacity: 1, running: [], version: 'test', draining: false }),
      });
    assert.equal((await heartbeat()).status, 200);
    return setInterval(() => void heartbeat(), 500);
  };

  before(async () => {
    redis = await startRedisServer({ password: 'fault-redis-password', persistence: true });
    f = await startFixtureServer('worker-faults', {
      jobConcurrency: 6,
      dispatch: {
        mode: 'bullmq',
        redis: { url: redis.url },
        workers: Object.fromEntries(Object.entries(TOKENS).map(([id, token]) => [id, { token }])),
        lockDurationSeconds: LOCK_SECONDS,
        stalledIntervalSeconds: STALLED_SECONDS,
        heartbeatTimeoutSeconds: 3,
        affinityWaitSeconds: 1,
      },
    });
  });
  after(async () => {
    for (const worker of processes.values()) await worker.stop('SIGKILL').catch(() => undefined);
    await f.close({ graceMs: 0 });
    await redis.stop();
  });

  test('kill -9 of a worker mid-build: the build ends error "worker <id> lost" with its status, within lockDuration + stalledInterval, and its container is gone', async () => {
    const k1 = await spawnWorker('k1');
    const sha = await push('refs/heads/long');
    const running = await runningWithOutput(sha, 'refs/heads/long', /sleeping as long/);
    assert.equal(workerOf(running), 'k1');
    const killedAt = Date.now();
    await k1.stop('SIGKILL');
    const ended = await until('the lost build', (b) => b.id === running.id && b.state !== 'running', 30_000);
    const seconds = (Date.now() - killedAt) / 1000;
    assert.equal(ended.state, 'error');
    assert.equal(ended.description, 'worker k1 lost');
    // BullMQ marks a job stalled at the first check after its lock expired, which is at most
    // two check intervals after the lock's end
    assert.ok(seconds <= LOCK_SECONDS + 2 * STALLED_SECONDS + 1, `ended ${seconds} s after the kill`);
    const statuses = await f.github.waitFor((r: RecordedRequest) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === sha, 2);
    assert.deepEqual(
      statuses.map((r) => (r.body as { state: string }).state),
      ['pending', 'error'],
    );
    const left = await containersOf(running.id);
    assert.deepEqual(
      left.map((c) => c.State),
      ['exited'],
      'the lost worker took its build with it (its next start removes the container)',
    );
  });

  test('with retry: 1 a build whose worker is lost runs once more on another worker, never in two containers at once', async () => {
    await spawnWorker('k2');
    await spawnWorker('k3');
    const events = (await docker.getEvents({ filters: { type: ['container'], event: ['start', 'die'], label: [BUILD_ID_LABEL] } })) as unknown as Readable;
    const seen: { buildId: string; action: string; at: number }[] = [];
    events.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        const e = JSON.parse(line) as { Action: string; timeNano: number; Actor: { Attributes: Record<string, string> } };
        seen.push({ buildId: e.Actor.Attributes[BUILD_ID_LABEL] ?? '', action: e.Action, at: e.timeNano });
      }
    });
    try {
      const sha = await push('refs/heads/retried', { 'message.txt': 'retried\n' });
      const running = await runningWithOutput(sha, 'refs/heads/retried', /slow build of/);
      const first = workerOf(running);
      assert.ok(first === 'k2' || first === 'k3');
      await processes.get(first)?.stop('SIGKILL');
      const ended = await until(
        'the retried build',
        (b) => b.id === running.id && (b.state === 'success' || b.state === 'failure' || b.state === 'error'),
        60_000,
      );
      assert.equal(ended.state, 'success', ended.description ?? '');
      assert.equal(workerOf(ended), first === 'k2' ? 'k3' : 'k2');
      assert.match(await (await fetch(ended.logUrl)).text(), new RegExp(`worker ${first} lost: trying again on another worker`));
      const mine = seen.filter((e) => e.buildId === running.id);
      assert.deepEqual(
        mine.map((e) => e.action),
        ['start', 'die', 'start', 'die'],
        'the second container started after the first had died',
      );
    } finally {
      events.destroy();
    }
  });

  test('SIGTERM drains a worker: its running build finishes and reports, it takes no more, and it exits 0', async () => {
    const alive = [...processes.values()].find((p) => p.child.exitCode === null && p.child.signalCode === null);
    assert.ok(alive, 'a live worker');
    for (const other of processes.values()) if (other !== alive) await other.stop('SIGKILL');
    const sha = await push('refs/heads/slow', { 'message.txt': 'drained\n' });
    const running = await runningWithOutput(sha, 'refs/heads/slow', /slow build of/);
    assert.equal(workerOf(running), alive.id);
    assert.equal(await alive.stop('SIGTERM'), 0);
    const ended = await until('the drained build', (b) => b.id === running.id && b.state !== 'running');
    assert.equal(ended.state, 'success', ended.description ?? '');
    // nothing live is left: a new build waits, saying why
    const waiting = await push('refs/heads/main', { 'message.txt': 'no worker left\n' });
    const queued = await until('a waiting build', (b) => b.sha === waiting && /Waiting for a worker: no live worker/.test(b.description ?? ''), 15_000);
    assert.equal(queued.state, 'queued');
    await spawnWorker('k1');
    const built = await f.waitForBuild((b) => b.id === queued.id);
    assert.equal(built.state, 'success', built.description ?? '');
  });

  test('runs-on sends a build only to a worker with those labels; until one is live it waits with that reason', async () => {
    const sha = await push('refs/heads/arm', { 'message.txt': 'for arm64\n' });
    const waiting = await until(
      'the arm build waiting',
      (b) => b.sha === sha && b.description === 'Waiting for a worker: no live worker has the labels arm64',
      15_000,
    );
    assert.equal(waiting.state, 'queued');
    await spawnWorker('arm', ['arm64']);
    const built = await f.waitForBuild((b) => b.id === waiting.id);
    assert.equal(built.state, 'success', built.description ?? '');
    assert.equal(workerOf(built), 'arm');
  });

  test('a Redis restart mid-build loses no build: the workers reconnect, every line arrives once and in order', async () => {
    const sha = await push('refs/heads/chatty', { 'message.txt': 'through a redis restart\n' });
    await runningWithOutput(sha, 'refs/heads/chatty', /chatty line 10 of 150/);
    await redis.restart();
    const built = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/chatty', 90_000);
    assert.equal(built.state, 'success', built.description ?? '');
    const numbers = [...(await (await fetch(built.logUrl)).text()).matchAll(/chatty line (\d+) of 150/g)].map((m) => Number(m[1]));
    assert.deepEqual(
      numbers,
      Array.from({ length: 150 }, (_, i) => i + 1),
    );
    // the connections of the worker and the server are cut mid-build: still every line once
    const next = await push('refs/heads/chatty', { 'message.txt': 'through cut connections\n' });
    await runningWithOutput(next, 'refs/heads/chatty', /chatty line 10 of 150/);
    const admin = new Redis(toRedisOptions(redis.url));
    try {
      await admin.call('CLIENT', 'KILL', 'TYPE', 'normal');
    } finally {
      admin.disconnect();
    }
    const again = await f.waitForBuild((b) => b.sha === next && b.ref === 'refs/heads/chatty', 90_000);
    assert.equal(again.state, 'success', again.description ?? '');
    const lines = [...(await (await fetch(again.logUrl)).text()).matchAll(/chatty line (\d+) of 150/g)].map((m) => Number(m[1]));
    assert.deepEqual(
      lines,
      Array.from({ length: 150 }, (_, i) => i + 1),
    );
  });

  test('the server keeps an artifact only when its own sha256 agrees, and a success whose artifact it did not receive is an error', async () => {
    // a worker that uploads one thing and reports another
    const beating = await beatAsRogue();
    const connection = new Redis(toRedisOptions(redis.url));
    const uploaded = Buffer.from('what was uploaded\n');
    const payloads: string[] = [];
    const rogue = new Worker(
      workerQueueName('rogue'),
      async (job: Job) => {
        const data = job.data as BuildJob;
        // the server's GitHub token never reaches a worker for a clone URL of another host
        payloads.push(JSON.stringify(job.data));
        const stream = createAttemptStreamWriter(connection, logStreamKey(data.buildId, data.attempt));
        await stream.append({ t: 'taken', worker: 'rogue' });
        const url = `${f.server.url}/api/workers/builds/${data.buildId}/artifacts/result.txt?attempt=${data.attempt}`;
        const put = (digest: string) =>
          fetch(url, { method: 'PUT', headers: { authorization: `Bearer ${TOKENS['rogue'] ?? ''}`, 'x-autobuilder-sha256': digest }, body: uploaded });
        const wrongHeader = await put('0'.repeat(64));
        const rightHeader = await put(createHash('sha256').update(uploaded).digest('hex'));
        await stream.append({ t: 'lines', lines: [`wrong header: ${wrongHeader.status}`, `right header: ${rightHeader.status}`] });
        const claimed = createHash('sha256').update('something else\n').digest('hex');
        await stream.append({
          t: 'end',
          end: { state: 'success', description: 'Built', exitCode: 0, artifacts: [{ name: 'result.txt', digest: claimed, size: 15 }] },
        });
        await stream.flush();
      },
      { connection, autorun: true },
    );
    try {
      const sha = await push('refs/heads/rogue', { 'message.txt': 'rogue\n' });
      const ended = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/rogue');
      assert.equal(ended.state, 'error');
      assert.match(
        ended.description ?? '',
        /artifact result\.txt from worker rogue: the server received sha256 [0-9a-f]{64}, the worker reported [0-9a-f]{64}/,
      );
      assert.deepEqual(ended.artifacts, []);
      const log = await (await fetch(ended.logUrl)).text();
      assert.match(log, /wrong header: 422/);
      assert.match(log, /right header: 201/);
      assert.equal(payloads.length, 1);
      assert.ok(!(payloads[0] ?? '').includes('test-token'), 'no GitHub token in the job');
      assert.match(payloads[0] ?? '', /"gitAuth":null/);
    } finally {
      clearInterval(beating);
      await rogue.close();
      connection.disconnect();
    }
  });

  test('a worker whose job fails without a result ends the build error with the reason, and does not hang it', async () => {
    const beating = await beatAsRogue();
    const connection = new Redis(toRedisOptions(redis.url));
    const failing = new Worker(
      workerQueueName('rogue'),
      () => {
        throw new Error('the disk of this worker is on fire');
      },
      { connection, autorun: true },
    );
    try {
      const sha = await push('refs/heads/rogue', { 'message.txt': 'on fire\n' });
      const ended = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/rogue', 30_000);
      assert.equal(ended.state, 'error');
      assert.equal(ended.description, 'worker rogue could not run the build: the disk of this worker is on fire');
    } finally {
      clearInterval(beating);
      await failing.close();
      connection.disconnect();
    }
  });
});
