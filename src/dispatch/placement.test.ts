import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ExecutionJob } from '../builds/build-execution.js';
import { createPlacement } from './placement.js';
import { createWorkerRegistry, type WorkerRegistry } from './worker-registry.js';

let n = 0;
/** A job with only what placement reads. */
const job = (runsOn: string[] = []): ExecutionJob => {
  n += 1;
  return { build: { id: `b${n}` }, definition: { runsOn } } as unknown as ExecutionJob;
};
const beat = (id: string, more: { labels?: string[]; capacity?: number; draining?: boolean } = {}) => ({
  id,
  host: id,
  labels: more.labels ?? [],
  capacity: more.capacity ?? 1,
  running: [],
  version: 'test',
  draining: more.draining ?? false,
});

async function withRegistry(run: (registry: WorkerRegistry) => Promise<void>): Promise<void> {
  const registry = createWorkerRegistry({ ttlMs: 10_000 });
  try {
    await run(registry);
  } finally {
    registry.close();
  }
}

describe('placing builds on workers', () => {
  test('only a live worker that is not draining and has every label of runs-on; the reason while none can', () =>
    withRegistry(async (registry) => {
      registry.heartbeat(beat('plain'));
      registry.heartbeat(beat('arm', { labels: ['arm64'], draining: true }));
      const place = createPlacement({ registry, affinityWaitMs: 0, lineageWorker: () => null, isClosed: () => false, now: Date.now });
      const said: string[] = [];
      const arm = job(['arm64']);
      const waiting = place(arm, new Set(), new AbortController().signal, (c) => said.push(c.description ?? ''));
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(said, ['Waiting for a worker: no live worker has the labels arm64']);
      registry.heartbeat(beat('arm', { labels: ['arm64', 'big'] }));
      assert.equal(await waiting, 'arm');
      assert.deepEqual(registry.get('arm')?.assigned, [arm.build.id]);
    }));

  test('the least loaded worker first, never past its capacity; an excluded worker is passed over; an abort gives up', () =>
    withRegistry(async (registry) => {
      registry.heartbeat(beat('a', { capacity: 2 }));
      registry.heartbeat(beat('b', { capacity: 2 }));
      const place = createPlacement({ registry, affinityWaitMs: 0, lineageWorker: () => null, isClosed: () => false, now: Date.now });
      const signal = new AbortController().signal;
      const report = () => undefined;
      const first = await place(job(), new Set(), signal, report);
      const second = await place(job(), new Set(), signal, report);
      assert.deepEqual(
        [String(first), String(second)].sort((x, y) => x.localeCompare(y)),
        ['a', 'b'],
      );
      assert.equal(await place(job(), new Set(['a']), signal, report), 'b');
      assert.equal(registry.freeSlots('b'), 0);
      const said: string[] = [];
      const controller = new AbortController();
      const blocked = place(job(), new Set(['a']), controller.signal, (c) => said.push(c.description ?? ''));
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(said, ['Waiting for a worker: all 1 matching workers are busy']);
      controller.abort();
      assert.equal(await blocked, null);
    }));

  test('the worker holding the lineage is waited for while busy, up to affinityWaitMs, then another takes the build', () =>
    withRegistry(async (registry) => {
      registry.heartbeat(beat('holder'));
      registry.heartbeat(beat('other'));
      registry.assign('holder', 'running-there');
      const place = createPlacement({ registry, affinityWaitMs: 300, lineageWorker: () => 'holder', isClosed: () => false, now: Date.now });
      const signal = new AbortController().signal;
      const said: string[] = [];
      const started = Date.now();
      const late = await place(job(), new Set(), signal, (c) => said.push(c.description ?? ''));
      assert.equal(late, 'other');
      assert.ok(Date.now() - started >= 280, 'it waited for the holder first');
      assert.deepEqual(said, ['Waiting for a worker: worker holder holds its workspace and is busy']);
      // the holder frees up within the wait: it takes the build
      registry.release('other', 'x');
      const soon = place(job(), new Set(), signal, () => undefined);
      setTimeout(() => registry.release('holder', 'running-there'), 50);
      assert.equal(await soon, 'holder');
    }));
});
