import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createBuildQueue, type BuildPriority } from './build-queue.js';

/** A job that runs until released, recording when it started. */
function gate() {
  let release = () => undefined as void;
  const done = new Promise<void>((r) => (release = r));
  return { done, release: () => release() };
}

describe('build queue', () => {
  test('runs at most `concurrency` jobs at once', async () => {
    const queue = createBuildQueue({ concurrency: 2 });
    const gates = [gate(), gate(), gate()];
    const started: string[] = [];
    gates.forEach((g, i) => queue.add({ buildId: `b${i}`, priority: 'other', run: () => (started.push(`b${i}`), g.done) }));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(started, ['b0', 'b1']);
    assert.equal(queue.running, 2);
    assert.equal(queue.size, 1);
    gates[0]?.release();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(started, ['b0', 'b1', 'b2']);
    gates[1]?.release();
    gates[2]?.release();
    await queue.onIdle();
    assert.equal(queue.running, 0);
  });

  test('starts tags first, then the default branch, then the rest, each in arrival order', async () => {
    const queue = createBuildQueue({ concurrency: 1 });
    const blocker = gate();
    const started: string[] = [];
    queue.add({ buildId: 'running', priority: 'other', run: () => blocker.done });
    const jobs: [string, BuildPriority][] = [
      ['o1', 'other'],
      ['d1', 'default-branch'],
      ['t1', 'tag'],
      ['o2', 'other'],
      ['t2', 'tag'],
      ['d2', 'default-branch'],
    ];
    for (const [id, priority] of jobs) queue.add({ buildId: id, priority, run: async () => void started.push(id) });
    assert.deepEqual(
      queue.waiting().map((w) => w.buildId),
      ['t1', 't2', 'd1', 'd2', 'o1', 'o2'],
    );
    assert.deepEqual(
      queue.waiting().map((w) => w.position),
      [1, 2, 3, 4, 5, 6],
    );
    blocker.release();
    await queue.onIdle();
    assert.deepEqual(started, ['t1', 't2', 'd1', 'd2', 'o1', 'o2']);
  });

  test('a removed job never runs; a running one cannot be removed', async () => {
    const queue = createBuildQueue({ concurrency: 1 });
    const blocker = gate();
    let ran = false;
    queue.add({ buildId: 'a', priority: 'other', run: () => blocker.done });
    queue.add({ buildId: 'b', priority: 'other', run: async () => void (ran = true) });
    assert.equal(queue.remove('a'), false);
    assert.equal(queue.remove('b'), true);
    assert.equal(queue.remove('b'), false);
    blocker.release();
    await queue.onIdle();
    assert.equal(ran, false);
  });

  test('after stop no waiting job starts, and onIdle waits only for running ones', async () => {
    const queue = createBuildQueue({ concurrency: 1 });
    const blocker = gate();
    let ran = false;
    queue.add({ buildId: 'a', priority: 'other', run: () => blocker.done });
    queue.add({ buildId: 'b', priority: 'other', run: async () => void (ran = true) });
    queue.stop();
    let idle = false;
    const waiting = queue.onIdle().then(() => (idle = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(idle, false);
    blocker.release();
    await waiting;
    assert.equal(ran, false);
    assert.equal(queue.size, 1);
  });

  test('a job that throws frees its slot and is reported', async () => {
    const errors: string[] = [];
    const queue = createBuildQueue({ concurrency: 1, onError: (_err, id) => errors.push(id) });
    let second = false;
    queue.add({ buildId: 'bad', priority: 'other', run: async () => Promise.reject(new Error('boom')) });
    queue.add({ buildId: 'good', priority: 'other', run: async () => void (second = true) });
    await queue.onIdle();
    assert.deepEqual(errors, ['bad']);
    assert.equal(second, true);
  });
});
