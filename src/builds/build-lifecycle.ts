import { AppError } from '../errors.js';
import type { Build, BuildState } from './build.js';

/**
 * Where a build is in its life, as the scheduler drives it:
 *
 * ```text
 * deciding ─┬─> cached
 *           ├─> coalesced ─┬─> waiting (the build it joined was cancelled: it takes over)
 *           │              └─> success | failure | error (its leader's result) | cancelled
 *           ├─> waiting ───┬─> running ─> success | failure | error | cancelled
 *           │              └─> cancelled
 *           └─> error | cancelled
 * ```
 *
 * `deciding` resolves the build's inputs and cache key; `cached` ends it with an earlier
 * build's result; `coalesced` joins an identical build in flight; `waiting` holds a slot's
 * turn. The stored {@link BuildState} is coarser: every phase before `running` is `queued`,
 * and `cached` is `success`.
 */
export type BuildPhase = 'deciding' | 'cached' | 'coalesced' | 'waiting' | 'running' | 'success' | 'failure' | 'error' | 'cancelled';

/** The phases a build never leaves. */
export type EndPhase = Exclude<BuildPhase, 'deciding' | 'coalesced' | 'waiting' | 'running'>;

/** Every legal transition: the phases each phase may go to. Anything else is a bug, thrown as such. */
export const TRANSITIONS: { readonly [P in BuildPhase]: readonly BuildPhase[] } = {
  deciding: ['cached', 'coalesced', 'waiting', 'error', 'cancelled'],
  coalesced: ['waiting', 'success', 'failure', 'error', 'cancelled'],
  waiting: ['running', 'cancelled'],
  running: ['success', 'failure', 'error', 'cancelled'],
  cached: [],
  success: [],
  failure: [],
  error: [],
  cancelled: [],
};

/**
 * Checks that `from → to` is in {@link TRANSITIONS}.
 * @throws AppError `ILLEGAL_TRANSITION` (500) naming the build and both phases
 */
export function assertTransition(buildId: string, from: BuildPhase, to: BuildPhase): void {
  if (!TRANSITIONS[from].includes(to)) throw new AppError('ILLEGAL_TRANSITION', `build ${buildId} cannot go from ${from} to ${to}`);
}

/** The stored state of a build in `phase`. */
export function toBuildState(phase: BuildPhase): BuildState {
  switch (phase) {
    case 'deciding':
    case 'coalesced':
    case 'waiting':
      return 'queued';
    case 'cached':
      return 'success';
    case 'running':
    case 'success':
    case 'failure':
    case 'error':
    case 'cancelled':
      return phase;
    default: {
      const unreachable: never = phase;
      return unreachable;
    }
  }
}

/** How a build ended: its final state and description, with what else it changes (exit code, artifacts, …). */
export type BuildEnd = { state: Exclude<BuildState, 'queued' | 'running'>; description: string | null } & Partial<Omit<Build, 'state' | 'description'>>;

/** Why a running build was stopped, carried as its abort signal's reason. */
export type StopReason =
  | { kind: 'timeout'; seconds: number }
  | { kind: 'output-timeout'; seconds: number }
  | { kind: 'cancelled'; description: string }
  | { kind: 'log-limit'; bytes: number }
  | { kind: 'disk-critical'; reason: string };
