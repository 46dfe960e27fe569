import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { QueueInfo, WaitingBuild } from '../builds/scheduler.js';
import { toWaitingReasons } from './waiting-reasons.js';

/** A queue with only what toWaitingReasons reads set meaningfully. */
function queue(changes: Partial<QueueInfo>): QueueInfo {
  return { concurrency: 1, backlog: 10, running: [], waiting: [], deciding: [], blocked: null, stopping: false, ...changes };
}

/** Builds waiting for a slot, in start order. */
function inLine(...ids: string[]): WaitingBuild[] {
  return ids.map((buildId, i) => ({ buildId, priority: 'other', position: i + 1, waitsFor: 'slot', joined: null, backlogNote: null, reason: '' }));
}

describe('why queued builds wait', () => {
  test('builds behind a full set of slots wait in line, first queued first', () => {
    assert.deepEqual(toWaitingReasons(queue({ running: ['run'], waiting: inLine('first', 'second') })), {
      first: 'waiting for a free slot: 1 of 1 running, 1st in line',
      second: 'waiting for a free slot: 1 of 1 running, 2nd in line',
    });
  });

  test('with free slots the first builds are starting and the rest wait', () => {
    assert.deepEqual(toWaitingReasons(queue({ concurrency: 2, waiting: inLine('a', 'b', 'c') })), {
      a: 'starting',
      b: 'starting',
      c: 'waiting for a free slot: 1st in line',
    });
  });

  test('a build still resolving its inputs, or joined to an identical one, says so', () => {
    const joined: WaitingBuild = { buildId: 'joined', priority: 'other', position: null, waitsFor: 'build', joined: 'leader-1', backlogNote: null, reason: '' };
    assert.deepEqual(toWaitingReasons(queue({ deciding: ['resolving'], waiting: [joined] })), {
      resolving: 'resolving its inputs (commit tree, image)',
      joined: 'waiting for build leader-1, which has the same inputs',
    });
  });

  test('says when the backlog was full as it was queued', () => {
    const [late] = inLine('late');
    assert.ok(late);
    assert.deepEqual(toWaitingReasons(queue({ running: ['run'], waiting: [{ ...late, backlogNote: 'backlog full (4 waiting)' }] })), {
      late: 'backlog full (4 waiting); waiting for a free slot: 1 of 1 running, 1st in line',
    });
  });

  test('says why nothing starts: the data volume under its reserve, or the server stopping', () => {
    assert.deepEqual(toWaitingReasons(queue({ waiting: inLine('a'), blocked: 'data volume has 3 MiB free, under the 10 MiB reserve' })), {
      a: 'data volume has 3 MiB free, under the 10 MiB reserve',
    });
    assert.deepEqual(toWaitingReasons(queue({ waiting: inLine('a'), stopping: true })), { a: 'autobuilder is stopping' });
  });

  test('says nothing of running builds', () => {
    assert.deepEqual(toWaitingReasons(queue({ running: ['run'] })), {});
  });
});
