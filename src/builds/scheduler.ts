import type { Build } from './build.js';
import type { BuildEnd, StopReason } from './build-lifecycle.js';
import type { BuildPriority } from './build-queue.js';

/** A build as the scheduler holds it: the stored record, its place in line, and what the caller needs to run it. */
export interface ScheduledBuild<P> {
  /** the build's record; the scheduler reads it, the hooks change it */
  build: Build;
  priority: BuildPriority;
  /** a newer build with the same key (repository, ref, definition) supersedes this one */
  supersedeKey: string;
  /** `owner/repo#n` for a build of a pull request, else null */
  pullRequestKey: string | null;
  payload: P;
}

/** A build that waits, as `GET /api/queue` and /monitor show it. */
export interface WaitingBuild {
  buildId: string;
  priority: BuildPriority;
  /** 1-based place in start order among builds waiting for a slot; null for one that joined an identical build */
  position: number | null;
  /** `slot`: waits for a free slot; `build`: joined `joined`, an identical build, and ends with it */
  waitsFor: 'slot' | 'build';
  /** for `build`: the id of the build it joined */
  joined: string | null;
  /** set when the backlog was already full as it was queued, e.g. `backlog full (4 waiting)` */
  backlogNote: string | null;
  /** why it has not started, in a few words */
  reason: string;
}

/** The queue as the API and the monitor show it: one derivation for both. */
export interface QueueInfo {
  concurrency: number;
  backlog: number;
  /** running builds, in the order they started */
  running: string[];
  /** builds waiting for a slot (in start order), then builds waiting for an identical build */
  waiting: WaitingBuild[];
  /** builds still being decided (commit tree, image, cache), oldest first */
  deciding: string[];
  /** why no build starts now (the data volume under its reserve), or null */
  blocked: string | null;
  /** true once the server is stopping: nothing more starts */
  stopping: boolean;
}

/** What the scheduler asks of its caller; every hook but `run` is synchronous. */
export interface SchedulerHooks<P> {
  /** Stores changes of a build that has not ended (and tells listeners); `publish`: also posts its commit status. */
  update(job: ScheduledBuild<P>, changes: Partial<Build>, publish: boolean): void;
  /** Ends a build: stores its final state, closes its log, posts its commit status. */
  end(job: ScheduledBuild<P>, end: BuildEnd): void;
  /**
   * Runs a leader in its slot; resolves with how it ended. A rejection is taken as an
   * `error` end. `signal` aborts with a {@link StopReason} (cancel, supersede, disk critical).
   */
  run(job: ScheduledBuild<P>, signal: AbortSignal): Promise<BuildEnd>;
  /** Changes stored when a build becomes a leader, new or taking over from a cancelled one (its cache-miss record). */
  leading?(job: ScheduledBuild<P>): Partial<Build>;
  /** Awaited after a leader's flight has ended, before its slot frees (a disk-space check). */
  afterRun?(): Promise<void>;
  /** Why no build may start now, or null (the data volume under its reserve). */
  blocked?(): string | null;
  /** A hook threw where nobody awaits it. */
  onError(err: unknown, buildId: string): void;
}

/**
 * The scheduler: the one owner of every build's place from `deciding` to its end, and the
 * only code that moves a build between phases, each move checked against the transition
 * table ({@link TRANSITIONS}). Everything but a leader's run is synchronous, so no rule
 * depends on what happens between two awaits.
 *
 * A *flight* is a leader (a build that runs) and the builds that joined it because their
 * inputs are the same (`coalesced`). {@link endFlight} is the one place a flight ends:
 * its followers get the leader's result, except when the leader was cancelled (by a user,
 * a newer push, its pull request closing): the cancel was not theirs, so the oldest
 * follower takes over as leader and waits for a slot, the others now following it.
 */
export interface Scheduler<P> {
  /**
   * Takes a new build in as `deciding`; the signal aborts (with the cancel's description)
   * when the build is cancelled meanwhile, to stop its git work.
   * @throws AppError `ILLEGAL_TRANSITION` when the build is already held
   */
  admit(job: ScheduledBuild<P>): AbortSignal;
  /** Ends a build being decided (a cache hit with `cached`, or an error). A cancelled decision ends `cancelled`. */
  endDecision(buildId: string, end: BuildEnd & { cached?: boolean }): void;
  /**
   * A decided build must run: it joins the identical build in flight with `cacheKey` when
   * `join` (not forced) and there is one, else it leads a new flight: older waiting builds
   * with its supersede key are cancelled (running ones too with `cancelRunningOnSupersede`),
   * and it waits for a slot, unless its pull request closed while it was decided (or it was
   * cancelled meanwhile): then it ends `cancelled`.
   */
  queue(buildId: string, decision: { cacheKey: string; join: boolean }): 'joined' | 'queued' | 'cancelled';
  /**
   * Cancels a held build with `reason`: a waiting or joined one at once, a running one by
   * stopping its run, one being decided by aborting its decision. Resolves when it has
   * ended; false when the scheduler does not hold it.
   */
  cancel(buildId: string, reason: string): Promise<boolean>;
  /**
   * Cancels the waiting and joined builds of a closed pull request, and notes the close: a
   * build of it still being decided is cancelled as it is queued (until {@link reopen}).
   * Running ones are left to finish. Returns the ids cancelled.
   */
  closePullRequest(pullRequestKey: string, reason: string): string[];
  /** A new request of a pull request (reopened, pushed): its builds are queued again. */
  reopen(pullRequestKey: string): void;
  /** Stops every running build with `reason`. */
  stopRunning(reason: StopReason): void;
  /** Waiting builds say again why they wait and start if they may (the data volume crossed its reserve). */
  refresh(): void;
  /** Starts nothing more (shutdown); waiting builds stay queued in the store. */
  stop(): void;
  /** True when as many builds wait (decided or not, beyond the free slots) as the backlog allows. */
  isBacklogFull(): boolean;
  info(): QueueInfo;
  /** Resolves when nothing runs and nothing waits (or nothing runs, once stopped). */
  idle(): Promise<void>;
}
