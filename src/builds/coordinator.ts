import { randomBytes } from 'node:crypto';
import type { Build } from './build.js';
import type { ExecutionPolicy } from './build-execution.js';
import type { BuildRequest, PullRequestTarget } from './build-request.js';
import type { QueueInfo } from './scheduler.js';

export type { QueueInfo } from './scheduler.js';

/** What came of a build request: the builds it made, or why none. */
export interface SubmitResult {
  builds: Build[];
  /** why no build was made; null when some were */
  reason: string | null;
}

/** Server-wide limits and policies of builds: those of running them, and of the queue. */
export interface BuildPolicy extends ExecutionPolicy {
  /** a newer push also stops the running build of the same ref and definition */
  cancelRunningOnSupersede: boolean;
  /** waiting builds past which {@link Coordinator.isBacklogFull} is true */
  backlog: number;
}

/** Turns build requests into builds and runs them. */
export interface Coordinator {
  /**
   * Looks up the definitions for the request (those of `definitionsRef` when given) and
   * makes one build per build script (per one named in `request.definitions`, when given).
   * A request without a sha has its ref resolved at the repository first. Each build is
   * answered from the cache (`cached`, no container), joins an identical build in flight
   * (`coalesced`), or is queued (superseding waiting builds of
   * the same ref and definition); statuses are posted for each. Resolves once every build is
   * decided, not run. A webhook's request for a tag makes no build of a definition that
   * already has one for that repository, tag and commit (unless it ended `error` or
   * `cancelled`): the tag's push and create events build once. A bad definition or a ref
   * that no longer exists is not thrown: it is logged and returned as `reason`.
   * @throws AppError `PARAMS_INVALID` (422) when `request.params` names a parameter no matching definition declares or gives one a value it does not allow
   * @throws AppError `GIT_FAILED` when the ref could not be resolved (the delivery is retried at the next start)
   */
  submit(request: BuildRequest): Promise<SubmitResult>;
  /**
   * Cancels a waiting or running build: a running container is killed. The build ends
   * `cancelled` and its status is posted as `error`.
   * @throws AppError `NOT_FOUND` (404), `CONFLICT` (409) when the build has ended
   */
  cancel(buildId: string, reason?: string): Promise<Build>;
  /**
   * Cancels the waiting builds of a pull request (those of its `refs/pull/<n>/head`); running
   * ones are left to finish, and so is a waiting one that builds of other refs joined
   * (same inputs). Resolves with the builds it cancelled then; a build still being decided
   * at that moment is cancelled when it reaches the queue, unless a new request of the pull
   * request (reopened) came after the close.
   */
  cancelPullRequest(target: PullRequestTarget, reason: string): Promise<Build[]>;
  /** True when as many builds wait as the backlog allows: the manual API then answers 503. */
  isBacklogFull(): boolean;
  queueInfo(): QueueInfo;
  /**
   * At start: decides again the builds a previous process left queued (same ids, logs
   * kept), in the order they were queued.
   */
  resume(): Promise<number>;
  /**
   * Stops taking work, lets running builds finish for `graceMs`, then cancels the rest
   * ("autobuilder stopped"). Waiting builds stay queued in the store for {@link resume}.
   */
  shutdown(graceMs: number): Promise<void>;
  /** Resolves when every queued and running build has ended (tests, shutdown). */
  idle(): Promise<void>;
}

/**
 * A build id: base-36 milliseconds, then 8 random hex digits. Ids sort by creation time as
 * plain strings (the time part stays 8 characters until 2059), which lineage heads rely on.
 */
export function createBuildId(now: () => number = Date.now): string {
  return `${now().toString(36)}-${randomBytes(4).toString('hex')}`;
}
