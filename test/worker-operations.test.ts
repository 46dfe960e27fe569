import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { io, type Socket } from 'socket.io-client';
import type { Build } from '../src/builds/build.js';
import type { MonitorClientEvents, MonitorServerEvents, MonitorSnapshot, MonitorWorkersDelta } from '../src/monitor/index.js';
import { launchBrowser, openPage, waitForExpression } from './support/browser.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { startRedisServer, type RunningRedis } from './support/redis-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';
import { startTestWorker } from './support/worker-process.js';
import type { RunningWorker } from '../src/worker/start-worker.js';

// Page code runs in the browser: it is passed to playwright as strings (the test project has
// no DOM types).

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

describe('operating build workers: metrics, the Workers table on /monitor, the worker on build pages', () => {
  let redis: RunningRedis;
  let f: FixtureServer;
  let browser: Browser;
  let shots: string;
  const workers: RunningWorker[] = [];

  const startOne = async (id: keyof typeof TOKENS, more: { labels?: string[]; capacity?: number; heartbeatSeconds?: number } = {}) => {
    const worker = await startTestWorker({
      id,
      token: TOKENS[id],
      serverUrl: f.server.url,
      redisUrl: redis.url,
      dir: f.dir,
      more: { labels: more.labels ?? [], capacity: more.capacity ?? 1, heartbeatSeconds: more.heartbeatSeconds ?? 0.5 },
      version: '9.8.7-test',
    });
    workers.push(worker);
    return worker;
  };

  const scrape = async (): Promise<Map<string, number>> => parseMetrics(await (await fetch(`${f.server.url}/metrics`)).text());
  const value = (metrics: Map<string, number>, name: string): number => {
    const found = metrics.get(name);
    assert.ok(found !== undefined, `${name} is exposed`);
    return found;
  };
  const shoot = (page: Page, name: string) => page.screenshot({ path: join(shots, name), fullPage: true });

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
    browser = await launchBrowser();
    shots = join(f.dir, 'screenshots');
    await mkdir(shots, { recursive: true });
    await startOne('w1', { labels: ['arm64', 'big'], capacity: 2 });
  });
  after(async () => {
    await browser.close();
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

  test('/monitor shows the Workers table with the live worker, and each build the worker it ran on; the build page names it', async () => {
    const { page, problems } = await openPage(browser, `${f.server.url}/monitor`);
    await page.waitForSelector('#connection.conn-live');
    const row = '#workers tr[data-worker-id="w1"]';
    await page.waitForSelector(row);
    assert.equal(await page.isVisible('#workers-section'), true);
    const cells = (await page.evaluate(`[...document.querySelectorAll('${row} td')].map((td) => td.textContent)`)) as string[];
    assert.equal(cells[0], 'w1');
    assert.equal(cells[1], hostname());
    assert.equal(cells[2], 'arm64 big');
    assert.equal(cells[3], 'live');
    assert.equal(cells[4], '0/2');
    assert.match(cells[5] ?? '', /^\d+s ago$/);
    assert.equal(cells[6], '9.8.7-test');
    assert.equal(await page.textContent('#workers-count'), '1');

    // a running build: the row counts it, the card and the history say where it runs
    const id = await push('slow');
    await waitForExpression(page, `document.querySelector('${row} td:nth-child(5)')?.textContent === '1/2'`, 15_000);
    await page.waitForSelector(`#running article[data-build-id="${id}"] .worker >> text=on w1`);
    await shoot(page, 'monitor-workers-running.png');
    await page.waitForSelector(`#history tr[data-build-id="${id}"][data-state="success"]`, { timeout: 30_000 });
    assert.equal(await page.textContent(`#history tr[data-build-id="${id}"] .worker`), 'on w1');
    await waitForExpression(page, `document.querySelector('${row} td:nth-child(5)')?.textContent === '0/2'`, 15_000);
    await shoot(page, 'monitor-workers-done.png');

    await page.goto(`${f.server.url}/builds/${id}`);
    await page.waitForSelector('#log .line');
    assert.equal(await page.isVisible('[data-field="worker"]'), true);
    assert.equal(await page.textContent('[data-field="worker"]'), 'w1');
    assert.equal(await page.textContent('[data-label="worker"]'), 'worker');
    await shoot(page, 'build-page-worker.png');
    assert.deepEqual(problems, []);
    await page.context().close();
  });

  test('the build page of a build waiting for a worker shows none, then the worker once it takes the build', async () => {
    // both slots of w1 taken by builds that run until they are cancelled
    const started = (id: string) =>
      new Promise<void>((resolve) => {
        const listener = (b: Build) => {
          if (b.id !== id) return;
          f.server.events.off('build.started', listener);
          resolve();
        };
        f.server.events.on('build.started', listener);
      });
    const longIds: string[] = [];
    for (let i = 0; i < 2; i++) {
      const id = await push('long');
      longIds.push(id);
      if (f.server.store.get(id)?.state !== 'running') await started(id);
    }
    const id = await push('slow');
    try {
      const { page, problems } = await openPage(browser, `${f.server.url}/builds/${id}`);
      await page.waitForSelector('[data-field="state"].state-queued');
      assert.match((await page.textContent('[data-field="description"]')) ?? '', /Waiting for a worker/);
      assert.equal(await page.isVisible('[data-field="worker"]'), false, 'no worker row while it waits');
      assert.equal(await page.isVisible('[data-label="worker"]'), false);
      // a slot frees: w1 takes the build, and the page hears of it
      await f.server.coordinator.cancel(longIds[0] ?? '');
      await page.waitForSelector('[data-field="worker"] >> text=w1', { timeout: 15_000 });
      assert.equal(await page.isVisible('[data-label="worker"]'), true);
      await page.waitForSelector('[data-field="state"].state-success', { timeout: 30_000 });
      await shoot(page, 'build-page-worker-live.png');
      assert.deepEqual(problems, []);
      await page.context().close();
    } finally {
      for (const longId of longIds) await f.server.coordinator.cancel(longId).catch(() => undefined);
    }
  });

  test('the monitor socket sends workers deltas at most twice a second, the last change included', async () => {
    const socket: Socket<MonitorServerEvents, MonitorClientEvents> = io(f.server.url, {
      path: '/socket.io',
      reconnection: false,
      forceNew: true,
      transports: ['websocket'],
    });
    const deltas: { received: number; delta: MonitorWorkersDelta }[] = [];
    const snapshot = new Promise<MonitorSnapshot>((resolve) => socket.once('snapshot', resolve));
    socket.on('workers', (delta) => deltas.push({ received: Date.now(), delta }));
    socket.on('connect', () => socket.emit('watch', {}));
    assert.deepEqual(
      (await snapshot).workers?.map((w) => [w.id, w.live, w.capacity]),
      [['w1', true, 2]],
    );

    // ten heartbeats a second: the registry changes far more often than the page hears of it
    const w2 = await startOne('w2', { heartbeatSeconds: 0.1 });
    await new Promise((r) => setTimeout(r, 3000));
    const during = deltas.length;
    assert.ok(during >= 4 && during <= 8, `${during} workers deltas in 3 s`);
    for (let i = 1; i < deltas.length; i++) {
      const gap = (deltas[i]?.received ?? 0) - (deltas[i - 1]?.received ?? 0);
      assert.ok(gap >= 400, `deltas ${i - 1} and ${i} came ${gap} ms apart`);
    }
    assert.deepEqual(
      deltas.at(-1)?.delta.workers.map((w) => w.id),
      ['w1', 'w2'],
    );

    // its last heartbeat says it drains: that change is sent too
    await w2.drain();
    await waitFor(() => deltas.at(-1)?.delta.workers.find((w) => w.id === 'w2')?.draining === true, 5000);
    socket.close();
  });
});

/** Polls `check` every 50 ms until it is true. @throws Error after `timeoutMs` */
async function waitFor(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not true within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
