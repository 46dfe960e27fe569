import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { QueueAnswer } from './api-schemas.js';
import { toShortRef, toWaitingText } from './build-format.js';

const queue = (changes: Partial<QueueAnswer> = {}): QueueAnswer => ({
  concurrency: 2,
  backlog: 100,
  running: ['r1', 'r2'],
  waiting: [
    { buildId: 'a', priority: 'other', position: 1, waitsFor: 'slot', joined: null, backlogNote: null, reason: 'all 2 slots busy' },
    { buildId: 'b', priority: 'other', position: 2, waitsFor: 'slot', joined: null, backlogNote: 'backlog full (4 waiting)', reason: 'all 2 slots busy' },
    { buildId: 'c', priority: 'other', position: null, waitsFor: 'build', joined: 'a', backlogNote: null, reason: 'waiting for build a (same inputs)' },
  ],
  deciding: ['d'],
  blocked: null,
  stopping: false,
  ...changes,
});

describe('toWaitingText', () => {
  test("gives a waiting build's place among those waiting for a slot, and the server's reason", () => {
    assert.equal(toWaitingText('a', queue()), 'position 1 of 2, all 2 slots busy');
    assert.equal(toWaitingText('b', queue()), 'position 2 of 2, all 2 slots busy (backlog full (4 waiting))');
    assert.equal(toWaitingText('c', queue()), 'waiting for build a (same inputs)');
  });

  test('says a build is being decided, and what keeps every build from starting', () => {
    assert.equal(toWaitingText('d', queue()), 'being decided (commit tree, image, cache)');
    assert.equal(
      toWaitingText('d', queue({ blocked: 'the data volume is under its reserve', stopping: true })),
      'being decided (commit tree, image, cache); nothing starts now: the data volume is under its reserve; the server is stopping',
    );
  });

  test('is null for a build the queue does not hold (it started or ended meanwhile)', () => {
    assert.equal(toWaitingText('gone', queue()), null);
  });
});

describe('toShortRef', () => {
  test('shortens branch and tag refs only', () => {
    assert.equal(toShortRef('refs/heads/feature/x'), 'feature/x');
    assert.equal(toShortRef('refs/tags/v1.2'), 'v1.2');
    assert.equal(toShortRef('refs/pull/7/head'), 'refs/pull/7/head');
  });
});
