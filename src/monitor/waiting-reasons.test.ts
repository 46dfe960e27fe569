import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Build } from '../builds/build.js';
import { toWaitingReasons } from './waiting-reasons.js';

let n = 0;
/** A build with only what toWaitingReasons reads set meaningfully. */
function build(changes: Partial<Build>): Build {
  n += 1;
  return {
    id: `b${String(n).padStart(3, '0')}`,
    repo: 'acme/widget',
    ref: 'refs/heads/main',
    sha: 'a'.repeat(40),
    definition: 'build',
    context: 'autobuilder/build',
    state: 'queued',
    exitCode: null,
    description: null,
    cached: false,
    coalesced: false,
    incremental: false,
    parentBuildId: null,
    cacheKey: 'k'.repeat(64),
    cacheInputs: null,
    sourceBuildId: null,
    cacheMiss: { comparedWith: null, differs: [], forced: false },
    configSha: null,
    deliveryId: null,
    queuedAt: `2026-01-01T00:00:0${n % 10}.000Z`,
    startedAt: null,
    finishedAt: null,
    artifacts: [],
    ...changes,
  };
}

describe('why queued builds wait', () => {
  test('builds behind a full set of slots wait in line, first queued first', () => {
    const running = build({ state: 'running', queuedAt: '2026-01-01T00:00:00.000Z' });
    const first = build({ queuedAt: '2026-01-01T00:00:01.000Z' });
    const second = build({ queuedAt: '2026-01-01T00:00:02.000Z' });
    assert.deepEqual(toWaitingReasons([second, running, first], 1), {
      [first.id]: 'waiting for a free slot: 1 of 1 running, 1st in line',
      [second.id]: 'waiting for a free slot: 1 of 1 running, 2nd in line',
    });
  });

  test('with free slots the first builds are starting and the rest wait', () => {
    const a = build({ queuedAt: '2026-01-01T00:00:01.000Z' });
    const b = build({ queuedAt: '2026-01-01T00:00:02.000Z' });
    const c = build({ queuedAt: '2026-01-01T00:00:03.000Z' });
    assert.deepEqual(toWaitingReasons([a, b, c], 2), { [a.id]: 'starting', [b.id]: 'starting', [c.id]: 'waiting for a free slot: 1st in line' });
  });

  test('a build still resolving its inputs, checking the cache, or joined to an identical one says so', () => {
    const resolving = build({ cacheKey: null, cacheMiss: null });
    const checking = build({ cacheMiss: null });
    const joined = build({ coalesced: true, sourceBuildId: 'leader-1' });
    assert.deepEqual(toWaitingReasons([resolving, checking, joined], 1), {
      [resolving.id]: 'resolving its inputs (commit tree, image)',
      [checking.id]: 'checking the build cache',
      [joined.id]: 'waiting for build leader-1, which has the same inputs',
    });
  });

  test('says when the backlog was full, as the coordinator noted', () => {
    const running = build({ state: 'running' });
    const late = build({ description: 'Queued: backlog full (4 waiting)' });
    assert.deepEqual(toWaitingReasons([running, late], 1), { [late.id]: 'backlog full (4 waiting); waiting for a free slot: 1 of 1 running, 1st in line' });
  });

  test('says nothing of running builds', () => {
    assert.deepEqual(toWaitingReasons([build({ state: 'running' })], 1), {});
  });
});
