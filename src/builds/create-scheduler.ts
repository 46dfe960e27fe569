import { AppError, toMessage } from '../errors.js';
import { assertTransition, type BuildEnd, type BuildPhase, type StopReason } from './build-lifecycle.js';
import { createBuildQueue } from './build-queue.js';
import type { ScheduledBuild, Scheduler, SchedulerHooks, WaitingBuild } from './scheduler.js';

interface Flight<P> {
  key: string;
  leader: Tracked<P>;
  followers: Tracked<P>[];
}

interface Tracked<P> {
  job: ScheduledBuild<P>;
  phase: BuildPhase;
  /** the flight it leads or joined */
  flight: Flight<P> | null;
  /** deciding: aborts its git work; running: stops its run */
  controller: AbortController;
  backlogNote: string | null;
  ended: Promise<void>;
  markEnded: () => void;
}

/** Milliseconds a closed pull request's note is kept (one hour). */
const CLOSED_NOTE_MS = 3600_000;

/** Creates a scheduler with `concurrency` slots (≥ 1) and `backlog` waiting builds before {@link Scheduler.isBacklogFull}. */
export function createScheduler<P>(options: {
  concurrency: number;
  backlog: number;
  cancelRunningOnSupersede: boolean;
  hooks: SchedulerHooks<P>;
}): Scheduler<P> {
  const { concurrency, backlog, hooks } = options;
  const queue = createBuildQueue({
    concurrency,
    onError: (err, buildId) => hooks.onError(err, buildId),
    canStart: () => (hooks.blocked?.() ?? null) === null,
  });
  /** every build from admission to its end, in admission order */
  const tracked = new Map<string, Tracked<P>>();
  /** flights that builds with the same cache key may join */
  const flights = new Map<string, Flight<P>>();
  /** running leaders in start order */
  const running = new Set<string>();
  const closedPullRequests = new Map<string, { reason: string; at: number }>();
  let accepting = true;

  const idOf = (t: Tracked<P>) => t.job.build.id;

  function held(buildId: string): Tracked<P> {
    const t = tracked.get(buildId);
    if (t === undefined) throw new AppError('ILLEGAL_TRANSITION', `build ${buildId} is not held by the scheduler`);
    return t;
  }

  /** The one place a build changes phase. */
  function move(t: Tracked<P>, to: BuildPhase): void {
    assertTransition(idOf(t), t.phase, to);
    t.phase = to;
    if (to === 'running') running.add(idOf(t));
    else running.delete(idOf(t));
  }

  function end(t: Tracked<P>, how: BuildEnd & { cached?: boolean }): void {
    move(t, how.cached === true ? 'cached' : how.state);
    tracked.delete(idOf(t));
    try {
      hooks.end(t.job, how);
    } finally {
      t.markEnded();
    }
  }

  function releaseKey(flight: Flight<P>): void {
    if (flights.get(flight.key) === flight) flights.delete(flight.key);
  }

  /** Builds that wait (being decided, joined, or for a slot) beyond what the free slots will take at once. */
  function backlogUse(except?: Tracked<P>): number {
    let pending = 0;
    for (const t of tracked.values()) if (t !== except && (t.phase === 'deciding' || t.phase === 'coalesced' || t.phase === 'waiting')) pending += 1;
    return Math.max(0, pending - Math.max(0, concurrency - queue.running));
  }

  function waitingDescription(t: Tracked<P>): string {
    const blocked = hooks.blocked?.() ?? null;
    if (blocked !== null) return `Queued: ${blocked}`;
    if (t.backlogNote !== null) return `Queued: ${t.backlogNote}`;
    return queue.running >= concurrency ? `Queued: all ${concurrency} slots busy` : 'Queued';
  }

  /** A leader (new, or taking over) waits for a slot. */
  function enqueue(t: Tracked<P>): void {
    const others = backlogUse(t);
    t.backlogNote = others >= backlog ? `backlog full (${others} waiting)` : null;
    move(t, 'waiting');
    // said before it is in line (a free slot starts it at once), told after: whoever hears of
    // the change finds it in the queue
    const description = waitingDescription(t);
    queue.add({ buildId: idOf(t), priority: t.job.priority, run: () => lead(t) });
    hooks.update(t.job, { description }, true);
  }

  async function lead(t: Tracked<P>): Promise<void> {
    move(t, 'running');
    t.controller = new AbortController();
    let how: BuildEnd;
    try {
      how = await hooks.run(t.job, t.controller.signal);
    } catch (err) {
      how = { state: 'error', description: `internal error: ${toMessage(err)}` };
    }
    endFlight(t.flight as Flight<P>, how);
    await hooks.afterRun?.();
  }

  /**
   * Ends a flight's leader with `how`, then its followers: with the leader's result, or,
   * when the leader was cancelled, the oldest follower takes over and waits for a slot.
   * The leader's result is stored before its key leaves the map: a request deciding in
   * between finds it in the store, never neither.
   */
  function endFlight(flight: Flight<P>, how: BuildEnd): void {
    const leader = flight.leader;
    end(leader, how);
    const [next, ...rest] = flight.followers;
    if (how.state === 'cancelled' && next !== undefined) {
      flight.leader = next;
      flight.followers = rest;
      hooks.update(next.job, { coalesced: false, sourceBuildId: null, ...hooks.leading?.(next.job) }, false);
      for (const f of rest) hooks.update(f.job, { sourceBuildId: idOf(next), description: `Waiting for build ${idOf(next)} (same inputs)` }, true);
      enqueue(next);
      return;
    }
    releaseKey(flight);
    flight.followers = [];
    const result = leader.job.build;
    for (const f of [next, ...rest]) {
      if (f === undefined) continue;
      end(f, {
        state: how.state,
        exitCode: result.exitCode,
        artifacts: structuredClone(result.artifacts),
        description: `Same inputs as build ${idOf(leader)}: ${result.description ?? how.state}`,
      });
    }
  }

  /** Cancels a waiting leader or a joined build at once. */
  function cancelQueued(t: Tracked<P>, reason: string): void {
    const flight = t.flight as Flight<P>;
    if (t.phase === 'waiting') {
      queue.remove(idOf(t));
      endFlight(flight, { state: 'cancelled', description: reason });
      return;
    }
    flight.followers = flight.followers.filter((f) => f !== t);
    end(t, { state: 'cancelled', description: reason });
  }

  function supersedeOlder(t: Tracked<P>): void {
    const reason = `Superseded by build ${idOf(t)}`;
    for (const other of [...tracked.values()]) {
      if (other === t || other.job.supersedeKey !== t.job.supersedeKey || idOf(other) >= idOf(t)) continue;
      if (other.phase === 'waiting' || other.phase === 'coalesced') cancelQueued(other, reason);
      else if (other.phase === 'running' && options.cancelRunningOnSupersede)
        other.controller.abort({ kind: 'cancelled', description: reason } satisfies StopReason);
    }
  }

  function closedNote(t: Tracked<P>): { reason: string } | undefined {
    return t.job.pullRequestKey === null ? undefined : closedPullRequests.get(t.job.pullRequestKey);
  }

  return {
    admit(job) {
      if (tracked.has(job.build.id)) throw new AppError('ILLEGAL_TRANSITION', `build ${job.build.id} is already held by the scheduler`);
      let markEnded = () => undefined as void;
      const ended = new Promise<void>((resolve) => (markEnded = resolve));
      const t: Tracked<P> = { job, phase: 'deciding', flight: null, controller: new AbortController(), backlogNote: null, ended, markEnded };
      tracked.set(job.build.id, t);
      return t.controller.signal;
    },

    endDecision(buildId, how) {
      const t = held(buildId);
      const { signal } = t.controller;
      end(t, signal.aborted ? { state: 'cancelled', description: String(signal.reason) } : how);
    },

    queue(buildId, { cacheKey, join }) {
      const t = held(buildId);
      if (t.controller.signal.aborted) {
        end(t, { state: 'cancelled', description: String(t.controller.signal.reason) });
        return 'cancelled';
      }
      const joined = join ? flights.get(cacheKey) : undefined;
      if (joined !== undefined) {
        move(t, 'coalesced');
        t.flight = joined;
        joined.followers.push(t);
        const leaderId = idOf(joined.leader);
        hooks.update(t.job, { coalesced: true, sourceBuildId: leaderId, description: `Waiting for build ${leaderId} (same inputs)` }, true);
        return 'joined';
      }
      const flight: Flight<P> = { key: cacheKey, leader: t, followers: [] };
      t.flight = flight;
      // a forced build runs even with an identical one in flight, and leaves that one joinable
      if (!flights.has(cacheKey)) flights.set(cacheKey, flight);
      const leading = hooks.leading?.(t.job);
      if (leading !== undefined) hooks.update(t.job, leading, false);
      supersedeOlder(t);
      const closed = closedNote(t);
      if (closed !== undefined) {
        releaseKey(flight);
        end(t, { state: 'cancelled', description: closed.reason });
        return 'cancelled';
      }
      enqueue(t);
      return 'queued';
    },

    async cancel(buildId, reason) {
      const t = tracked.get(buildId);
      if (t === undefined) return false;
      switch (t.phase) {
        case 'deciding':
          t.controller.abort(reason);
          break;
        case 'waiting':
        case 'coalesced':
          cancelQueued(t, reason);
          break;
        case 'running':
          t.controller.abort({ kind: 'cancelled', description: reason } satisfies StopReason);
          break;
        case 'cached':
        case 'success':
        case 'failure':
        case 'error':
        case 'cancelled':
          break;
        default: {
          const unreachable: never = t.phase;
          return unreachable;
        }
      }
      await t.ended;
      return true;
    },

    closePullRequest(pullRequestKey, reason) {
      const at = Date.now();
      for (const [key, note] of closedPullRequests) if (at - note.at > CLOSED_NOTE_MS) closedPullRequests.delete(key);
      closedPullRequests.set(pullRequestKey, { reason, at });
      const cancelled: string[] = [];
      for (const t of [...tracked.values()]) {
        if (t.job.pullRequestKey !== pullRequestKey || (t.phase !== 'waiting' && t.phase !== 'coalesced')) continue;
        cancelQueued(t, reason);
        cancelled.push(idOf(t));
      }
      return cancelled;
    },

    reopen(pullRequestKey) {
      closedPullRequests.delete(pullRequestKey);
    },

    stopRunning(reason) {
      for (const id of running) tracked.get(id)?.controller.abort(reason);
    },

    refresh() {
      for (const t of tracked.values()) {
        if (t.phase !== 'waiting') continue;
        const description = waitingDescription(t);
        if (t.job.build.description !== description) hooks.update(t.job, { description }, true);
      }
      queue.wake();
    },

    stop() {
      accepting = false;
      queue.stop();
    },

    isBacklogFull: () => backlogUse() >= backlog,

    info() {
      const blocked = hooks.blocked?.() ?? null;
      const slotsBusy = queue.running >= concurrency;
      const inLine: WaitingBuild[] = queue.waiting().map((w) => ({
        ...w,
        waitsFor: 'slot',
        joined: null,
        backlogNote: tracked.get(w.buildId)?.backlogNote ?? null,
        reason: !accepting
          ? 'autobuilder is stopping'
          : (blocked ?? (w.position > backlog ? 'backlog full' : slotsBusy ? `all ${concurrency} slots busy` : 'starting')),
      }));
      const joined: WaitingBuild[] = [];
      const deciding: string[] = [];
      for (const t of tracked.values()) {
        if (t.phase === 'deciding') deciding.push(idOf(t));
        if (t.phase !== 'coalesced') continue;
        const leaderId = idOf((t.flight as Flight<P>).leader);
        joined.push({
          buildId: idOf(t),
          priority: t.job.priority,
          position: null,
          waitsFor: 'build',
          joined: leaderId,
          backlogNote: null,
          reason: `waiting for build ${leaderId} (same inputs)`,
        });
      }
      return { concurrency, backlog, running: [...running], waiting: [...inLine, ...joined], deciding, blocked, stopping: !accepting };
    },

    idle: () => queue.onIdle(),
  };
}
