import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isAppError } from '../errors.js';
import { buildRecord } from '../../test/support/build-record.js';
import type { Build } from './build.js';
import { assertTransition, TRANSITIONS, type BuildEnd, type BuildPhase, type StopReason } from './build-lifecycle.js';
import type { BuildPriority } from './build-queue.js';
import { createScheduler } from './create-scheduler.js';
import type { ScheduledBuild, SchedulerHooks } from './scheduler.js';

let clock = 0;
/** A build record with a fresh, increasing id. */
function record(ref: string, definition = 'build'): Build {
  clock += 1;
  return buildRecord({
    id: `b${String(clock).padStart(6, '0')}`,
    ref,
    definition,
    context: `autobuilder/${definition}`,
    state: 'queued',
    exitCode: null,
    description: 'Queued',
    queuedAt: new Date(clock).toISOString(),
  });
}

/** A scheduler over fake hooks: runs wait until the test ends them; every hook call is recorded. */
function harness(options: { concurrency?: number; backlog?: number; cancelRunningOnSupersede?: boolean; blocked?: () => string | null } = {}) {
  const runs = new Map<string, { end: (how: BuildEnd) => void; signal: AbortSignal }>();
  const ended = new Map<string, BuildEnd & { cached?: boolean }>();
  const published: string[] = [];
  const leading: string[] = [];
  const errors: unknown[] = [];
  const hooks: SchedulerHooks<null> = {
    update(job, changes, publish) {
      Object.assign(job.build, changes);
      if (publish) published.push(`${job.build.id} ${job.build.description ?? ''}`);
    },
    end(job, how) {
      Object.assign(job.build, how);
      ended.set(job.build.id, how);
    },
    run(job, signal) {
      Object.assign(job.build, { state: 'running' });
      return new Promise<BuildEnd>((resolve) => {
        runs.set(job.build.id, { end: resolve, signal });
        // a stop ends the run as the executor does: with the stop's reason
        signal.addEventListener('abort', () => {
          const reason = signal.reason as StopReason;
          resolve(reason.kind === 'cancelled' ? { state: 'cancelled', description: reason.description } : { state: 'error', description: reason.kind });
        });
      });
    },
    leading(job) {
      leading.push(job.build.id);
      return { cacheMiss: { comparedWith: null, differs: [], forced: false } };
    },
    blocked: options.blocked ?? (() => null),
    onError: (err) => errors.push(err),
  };
  const scheduler = createScheduler<null>({
    concurrency: options.concurrency ?? 1,
    backlog: options.backlog ?? 10,
    cancelRunningOnSupersede: options.cancelRunningOnSupersede ?? false,
    hooks,
  });
  const admit = (ref: string, more: { priority?: BuildPriority; pullRequest?: string; definition?: string } = {}) => {
    const build = record(ref, more.definition);
    const job: ScheduledBuild<null> = {
      build,
      priority: more.priority ?? 'other',
      supersedeKey: `${build.repo}\n${build.ref}\n${build.definition}`,
      pullRequestKey: more.pullRequest ?? null,
      payload: null,
    };
    const signal = scheduler.admit(job);
    return { build, signal };
  };
  /** Lets started runs reach the run hook (the queue starts jobs on a microtask). */
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  return { scheduler, runs, ended, published, leading, errors, admit, settle };
}

describe('the scheduler runs every path of the transition table', () => {
  test('the table: what each phase may become, and nothing else', () => {
    const phases = Object.keys(TRANSITIONS) as BuildPhase[];
    for (const from of phases) {
      for (const to of phases) {
        const legal = TRANSITIONS[from].includes(to);
        if (legal) assert.doesNotThrow(() => assertTransition('b', from, to));
        else
          assert.throws(
            () => assertTransition('b', from, to),
            (err) => isAppError(err, 'ILLEGAL_TRANSITION'),
          );
      }
    }
    for (const end of ['cached', 'success', 'failure', 'error', 'cancelled'] as const) assert.deepEqual(TRANSITIONS[end], [], `${end} is final`);
  });

  test('deciding → cached ends a build without a slot', () => {
    const h = harness();
    const { build } = h.admit('refs/heads/main');
    h.scheduler.endDecision(build.id, { state: 'success', cached: true, description: 'Cached' });
    assert.equal(h.ended.get(build.id)?.cached, true);
    assert.equal(h.scheduler.info().deciding.length, 0);
  });

  test('deciding → error, and an illegal end (failure while deciding) is thrown, not ignored', () => {
    const h = harness();
    const a = h.admit('refs/heads/a');
    h.scheduler.endDecision(a.build.id, { state: 'error', description: 'no such image' });
    assert.equal(h.ended.get(a.build.id)?.state, 'error');
    const b = h.admit('refs/heads/b');
    assert.throws(
      () => h.scheduler.endDecision(b.build.id, { state: 'failure', description: 'x' }),
      (err) => isAppError(err, 'ILLEGAL_TRANSITION'),
    );
    assert.throws(
      () => h.scheduler.queue(a.build.id, { cacheKey: 'k', join: true }),
      (err) => isAppError(err, 'ILLEGAL_TRANSITION'),
    );
  });

  test('deciding → cancelled: a cancel aborts the decision, and a decision that completes anyway ends cancelled', async () => {
    const h = harness();
    const { build, signal } = h.admit('refs/heads/main');
    const cancelled = h.scheduler.cancel(build.id, 'stop it');
    assert.equal(signal.aborted, true);
    assert.equal(h.scheduler.queue(build.id, { cacheKey: 'k', join: true }), 'cancelled');
    assert.equal(await cancelled, true);
    assert.deepEqual(h.ended.get(build.id), { state: 'cancelled', description: 'stop it' });
  });

  test('deciding → waiting → running → success, and builds that joined it end with its result', async () => {
    const h = harness();
    const leader = h.admit('refs/heads/main');
    assert.equal(h.scheduler.queue(leader.build.id, { cacheKey: 'k', join: true }), 'queued');
    const follower = h.admit('refs/heads/copy');
    assert.equal(h.scheduler.queue(follower.build.id, { cacheKey: 'k', join: true }), 'joined');
    assert.equal(follower.build.sourceBuildId, leader.build.id);
    assert.deepEqual(h.leading, [leader.build.id], 'only the leader records a cache miss');
    await h.settle();
    assert.deepEqual(h.scheduler.info().running, [leader.build.id]);
    h.runs.get(leader.build.id)?.end({ state: 'success', exitCode: 0, description: 'Built in 1 s' });
    await h.scheduler.idle();
    assert.equal(h.ended.get(leader.build.id)?.state, 'success');
    assert.equal(h.ended.get(follower.build.id)?.state, 'success');
    assert.equal(h.ended.get(follower.build.id)?.description, `Same inputs as build ${leader.build.id}: Built in 1 s`);
  });

  test('running → failure and running → error pass their result to joined builds too', async () => {
    for (const state of ['failure', 'error'] as const) {
      const h = harness();
      const leader = h.admit('refs/heads/main');
      h.scheduler.queue(leader.build.id, { cacheKey: 'k', join: true });
      const follower = h.admit('refs/heads/copy');
      h.scheduler.queue(follower.build.id, { cacheKey: 'k', join: true });
      await h.settle();
      h.runs.get(leader.build.id)?.end({ state, exitCode: 2, description: 'exited 2' });
      await h.scheduler.idle();
      assert.equal(h.ended.get(follower.build.id)?.state, state);
      assert.equal(follower.build.exitCode, 2);
    }
  });

  test('a forced build never joins: it runs even with an identical build in flight', async () => {
    const h = harness({ concurrency: 2 });
    const first = h.admit('refs/heads/one');
    h.scheduler.queue(first.build.id, { cacheKey: 'k', join: true });
    const forced = h.admit('refs/heads/two');
    assert.equal(h.scheduler.queue(forced.build.id, { cacheKey: 'k', join: false }), 'queued');
    const later = h.admit('refs/heads/other');
    assert.equal(h.scheduler.queue(later.build.id, { cacheKey: 'k', join: true }), 'joined');
    assert.equal(later.build.sourceBuildId, first.build.id, 'the flight the key names is still the first');
  });

  test('coalesced → cancelled: a joined build leaves its flight alone; the leader runs on', async () => {
    const h = harness();
    const leader = h.admit('refs/heads/main');
    h.scheduler.queue(leader.build.id, { cacheKey: 'k', join: true });
    const follower = h.admit('refs/heads/copy');
    h.scheduler.queue(follower.build.id, { cacheKey: 'k', join: true });
    assert.equal(await h.scheduler.cancel(follower.build.id, 'not this one'), true);
    assert.equal(h.ended.get(follower.build.id)?.state, 'cancelled');
    await h.settle();
    h.runs.get(leader.build.id)?.end({ state: 'success', description: 'ok' });
    await h.scheduler.idle();
    assert.equal(h.ended.get(leader.build.id)?.state, 'success');
    assert.equal(h.ended.get(follower.build.id)?.description, 'not this one', 'ended once');
  });

  test('waiting → cancelled: the builds that joined it take over (coalesced → waiting → running)', async () => {
    const h = harness();
    const blocker = h.admit('refs/heads/blocker');
    h.scheduler.queue(blocker.build.id, { cacheKey: 'other', join: true });
    const leader = h.admit('refs/heads/main');
    h.scheduler.queue(leader.build.id, { cacheKey: 'k', join: true });
    const first = h.admit('refs/heads/one');
    h.scheduler.queue(first.build.id, { cacheKey: 'k', join: true });
    const second = h.admit('refs/heads/two');
    h.scheduler.queue(second.build.id, { cacheKey: 'k', join: true });
    await h.settle();
    await h.scheduler.cancel(leader.build.id, 'cancelled');
    assert.equal(h.ended.get(leader.build.id)?.state, 'cancelled');
    assert.equal(first.build.coalesced, false);
    assert.equal(second.build.sourceBuildId, first.build.id, 'the others now follow the new leader');
    assert.ok(h.leading.includes(first.build.id), 'the new leader records its cache miss');
    assert.deepEqual(
      h.scheduler.info().waiting.map((w) => [w.buildId, w.waitsFor]),
      [
        [first.build.id, 'slot'],
        [second.build.id, 'build'],
      ],
    );
    h.runs.get(blocker.build.id)?.end({ state: 'success', description: 'ok' });
    await h.settle();
    assert.deepEqual(h.scheduler.info().running, [first.build.id]);
    h.runs.get(first.build.id)?.end({ state: 'success', description: 'Built' });
    await h.scheduler.idle();
    assert.equal(h.ended.get(second.build.id)?.state, 'success');
  });

  test('running → cancelled: the run is stopped and a joined build takes over and runs', async () => {
    const h = harness();
    const leader = h.admit('refs/heads/main');
    h.scheduler.queue(leader.build.id, { cacheKey: 'k', join: true });
    const follower = h.admit('refs/heads/copy');
    h.scheduler.queue(follower.build.id, { cacheKey: 'k', join: true });
    await h.settle();
    await h.scheduler.cancel(leader.build.id, 'by hand');
    assert.equal(h.runs.get(leader.build.id)?.signal.aborted, true);
    assert.deepEqual(h.ended.get(leader.build.id), { state: 'cancelled', description: 'by hand' });
    await h.settle();
    assert.deepEqual(h.scheduler.info().running, [follower.build.id]);
    h.runs.get(follower.build.id)?.end({ state: 'success', description: 'ok' });
    await h.scheduler.idle();
    assert.equal(h.ended.get(follower.build.id)?.state, 'success');
  });

  test('a tag build that joined a main build still builds when a newer main push supersedes that build', async () => {
    const h = harness();
    const blocker = h.admit('refs/heads/blocker');
    h.scheduler.queue(blocker.build.id, { cacheKey: 'blocker', join: true });
    await h.settle();
    const main = h.admit('refs/heads/main', { priority: 'default-branch' });
    h.scheduler.queue(main.build.id, { cacheKey: 'tree-1', join: true });
    const tag = h.admit('refs/tags/v1', { priority: 'tag' });
    assert.equal(h.scheduler.queue(tag.build.id, { cacheKey: 'tree-1', join: true }), 'joined');
    const newer = h.admit('refs/heads/main', { priority: 'default-branch' });
    h.scheduler.queue(newer.build.id, { cacheKey: 'tree-2', join: true });

    assert.deepEqual(h.ended.get(main.build.id), { state: 'cancelled', description: `Superseded by build ${newer.build.id}` });
    assert.equal(h.ended.has(tag.build.id), false, 'the tag build is not cancelled with it');
    assert.deepEqual(
      h.scheduler.info().waiting.map((w) => w.buildId),
      [tag.build.id, newer.build.id],
      'the tag build waits at its own priority, before the default branch',
    );
    h.runs.get(blocker.build.id)?.end({ state: 'success', description: 'ok' });
    await h.settle();
    assert.deepEqual(h.scheduler.info().running, [tag.build.id]);
    h.runs.get(tag.build.id)?.end({ state: 'success', description: 'Built' });
    await h.settle();
    h.runs.get(newer.build.id)?.end({ state: 'success', description: 'Built' });
    await h.scheduler.idle();
    assert.equal(h.ended.get(tag.build.id)?.state, 'success');
    assert.equal(h.ended.get(newer.build.id)?.state, 'success');
  });

  test('a newer push supersedes older waiting and joined builds of its ref, and running ones only when asked to', async () => {
    for (const cancelRunningOnSupersede of [false, true]) {
      const h = harness({ concurrency: 1, cancelRunningOnSupersede });
      const running = h.admit('refs/heads/main');
      h.scheduler.queue(running.build.id, { cacheKey: 'k0', join: true });
      await h.settle();
      const waiting = h.admit('refs/heads/main');
      h.scheduler.queue(waiting.build.id, { cacheKey: 'k1', join: true });
      const joined = h.admit('refs/heads/main');
      h.scheduler.queue(joined.build.id, { cacheKey: 'k1', join: true });
      const newest = h.admit('refs/heads/main');
      h.scheduler.queue(newest.build.id, { cacheKey: 'k2', join: true });
      assert.equal(h.ended.get(waiting.build.id)?.state, 'cancelled');
      assert.equal(h.ended.get(joined.build.id)?.state, 'cancelled', 'a joined build of the same ref is superseded, not promoted');
      assert.equal(h.runs.get(running.build.id)?.signal.aborted, cancelRunningOnSupersede);
      if (!cancelRunningOnSupersede) h.runs.get(running.build.id)?.end({ state: 'success', description: 'ok' });
      await h.settle();
      h.runs.get(newest.build.id)?.end({ state: 'success', description: 'ok' });
      await h.scheduler.idle();
      assert.equal(h.ended.get(running.build.id)?.state, cancelRunningOnSupersede ? 'cancelled' : 'success');
    }
  });

  test('a closed pull request cancels its waiting and joined builds, and one being decided as it is queued, until reopened', async () => {
    const h = harness();
    const blocker = h.admit('refs/heads/blocker');
    h.scheduler.queue(blocker.build.id, { cacheKey: 'blocker', join: true });
    const pr = '#7';
    const waiting = h.admit('refs/pull/7/head', { pullRequest: pr });
    h.scheduler.queue(waiting.build.id, { cacheKey: 'k', join: true });
    const other = h.admit('refs/heads/other');
    h.scheduler.queue(other.build.id, { cacheKey: 'k', join: true });
    const deciding = h.admit('refs/pull/7/head', { pullRequest: pr, definition: 'lint' });
    assert.deepEqual(h.scheduler.closePullRequest(pr, 'pull request #7 was closed'), [waiting.build.id]);
    assert.equal(h.ended.get(waiting.build.id)?.description, 'pull request #7 was closed');
    assert.equal(other.build.coalesced, false, 'the build of another ref that joined it takes over');
    assert.equal(h.scheduler.queue(deciding.build.id, { cacheKey: 'lint', join: true }), 'cancelled');
    h.scheduler.reopen(pr);
    const reopened = h.admit('refs/pull/7/head', { pullRequest: pr });
    assert.equal(h.scheduler.queue(reopened.build.id, { cacheKey: 'k3', join: true }), 'queued');
  });

  test('the backlog counts joined and undecided builds beyond the free slots; the queue lists them', async () => {
    const h = harness({ concurrency: 1, backlog: 1 });
    const first = h.admit('refs/heads/a');
    assert.equal(h.scheduler.isBacklogFull(), false, 'a build being decided takes the free slot');
    h.scheduler.queue(first.build.id, { cacheKey: 'k', join: true });
    await h.settle();
    assert.equal(h.scheduler.isBacklogFull(), false);
    const second = h.admit('refs/heads/b');
    h.scheduler.queue(second.build.id, { cacheKey: 'k', join: true });
    assert.equal(h.scheduler.isBacklogFull(), true, 'one build waits: the backlog of 1 is full');
    const info = h.scheduler.info();
    assert.deepEqual(
      info.waiting.map((w) => [w.buildId, w.waitsFor, w.joined]),
      [[second.build.id, 'build', first.build.id]],
    );
    const third = h.admit('refs/heads/c');
    assert.deepEqual(h.scheduler.info().deciding, [third.build.id]);
    h.scheduler.queue(third.build.id, { cacheKey: 'k-c', join: true });
    assert.equal(third.build.description, 'Queued: backlog full (1 waiting)');
    assert.deepEqual(
      h.scheduler.info().waiting.map((w) => [w.buildId, w.position, w.backlogNote]),
      [
        [third.build.id, 1, 'backlog full (1 waiting)'],
        [second.build.id, null, null],
      ],
    );
  });

  test('while blocked nothing starts and waiting builds say why; stop starts nothing more; stopRunning ends running builds', async () => {
    let blocked: string | null = 'data volume low';
    const h = harness({ concurrency: 2, blocked: () => blocked });
    const a = h.admit('refs/heads/a');
    h.scheduler.queue(a.build.id, { cacheKey: 'a', join: true });
    await h.settle();
    assert.equal(a.build.description, 'Queued: data volume low');
    assert.deepEqual(h.scheduler.info().running, []);
    blocked = null;
    h.scheduler.refresh();
    await h.settle();
    assert.deepEqual(h.scheduler.info().running, [a.build.id]);
    h.scheduler.stop();
    const b = h.admit('refs/heads/b');
    h.scheduler.queue(b.build.id, { cacheKey: 'b', join: true });
    await h.settle();
    assert.deepEqual(h.scheduler.info().running, [a.build.id], 'nothing starts once stopped');
    assert.equal(h.scheduler.info().stopping, true);
    h.scheduler.stopRunning({ kind: 'cancelled', description: 'autobuilder stopped' });
    await h.scheduler.idle();
    assert.deepEqual(h.ended.get(a.build.id), { state: 'cancelled', description: 'autobuilder stopped' });
    assert.equal(h.ended.has(b.build.id), false, 'a waiting build stays queued for the next start');
  });

  test('a closed pull request cancels every one of its 1003 waiting and joined builds, and nothing else', async () => {
    const h = harness();
    const blocker = h.admit('refs/heads/blocker');
    h.scheduler.queue(blocker.build.id, { cacheKey: 'blocker', join: true });
    await h.settle();
    const ids: string[] = [];
    for (let i = 0; i < 1003; i++) {
      // one definition per build: none supersedes another; every third joins the one before it
      const { build } = h.admit('refs/pull/7/head', { pullRequest: '#7', definition: `d${i}` });
      h.scheduler.queue(build.id, { cacheKey: `k${i - (i % 3 === 2 ? 1 : 0)}`, join: true });
      ids.push(build.id);
    }
    assert.deepEqual(h.scheduler.closePullRequest('#7', 'closed').sort(), ids.sort());
    assert.equal(ids.filter((id) => h.ended.get(id)?.state === 'cancelled').length, 1003);
    assert.deepEqual(h.scheduler.info().running, [blocker.build.id]);
    assert.deepEqual(h.scheduler.info().waiting, []);
  });

  test('cancel answers false for a build it does not hold', async () => {
    const h = harness();
    assert.equal(await h.scheduler.cancel('nope', 'x'), false);
    assert.deepEqual(h.errors, []);
  });
});
