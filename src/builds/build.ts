/**
 * Build states: `queued → running → success | failure | error | cancelled`.
 * `failure` is the build's own non-zero exit (or missing artifact); `error` is ours
 * (image missing, Docker down, git fetch failed, crash).
 */
export type BuildState = 'queued' | 'running' | 'success' | 'failure' | 'error' | 'cancelled';

/** True for the states a build never leaves. */
export function isTerminal(state: BuildState): boolean {
  switch (state) {
    case 'queued':
    case 'running':
      return false;
    case 'success':
    case 'failure':
    case 'error':
    case 'cancelled':
      return true;
    default: {
      const unreachable: never = state;
      return unreachable;
    }
  }
}

import type { CacheInputs } from './cache-key.js';

/** Why a build was not a cache hit: the nearest earlier build of its definition, and what differed. */
export interface CacheMiss {
  /** id of the nearest earlier build of the same repository and definition; null when there is none */
  comparedWith: string | null;
  /** the inputs that differ from it (empty with `force`) */
  differs: (keyof CacheInputs)[];
  /** true when the build was forced, whatever its inputs */
  forced: boolean;
}

/** An artifact a build produced: its file name and where the content-addressed store keeps it. */
export interface BuildArtifact {
  name: string;
  /** sha256 of the content, 64 lowercase hex */
  digest: string;
  /** bytes */
  size: number;
}

/** One build: one build script of one definition file, run for one commit. */
export interface Build {
  /** sortable id, e.g. `mfx1k2p3-9f3a2c1d` */
  id: string;
  /** `owner/name` */
  repo: string;
  /** full ref, `refs/heads/main` or `refs/tags/v1` */
  ref: string;
  /** commit sha, 40 hex */
  sha: string;
  /** the build's name inside its repository (the script's `tag`, else the script path) */
  definition: string;
  /** commit status context, `autobuilder/<definition>` */
  context: string;
  state: BuildState;
  /** the script's exit code once it ran, else null */
  exitCode: number | null;
  /** a short human-readable outcome, also the commit status description */
  description: string | null;
  cached: boolean;
  coalesced: boolean;
  /** true when the workspace was a snapshot of an earlier green build */
  incremental: boolean;
  /** the build whose workspace this one started from */
  parentBuildId: string | null;
  /** sha256 over the canonical JSON of `cacheInputs` (see cache-key.ts); null until known */
  cacheKey: string | null;
  cacheInputs: CacheInputs | null;
  /** for a cached or coalesced build: the build whose result it reuses */
  sourceBuildId: string | null;
  /** for a build that ran: why no earlier build could be reused */
  cacheMiss: CacheMiss | null;
  /** config repository commit the definition was read at */
  configSha: string | null;
  /** the build worker that ran it (bullmq dispatch); null when it ran on the server or not at all */
  worker: string | null;
  /**
   * the parameters it was built with, by name: those its request gave, else the defaults its
   * definition declares (see build-params.ts); absent or `{}` for a build without any (one
   * stored before parameters existed has none)
   */
  params?: Record<string, string>;
  /** the X-GitHub-Delivery that asked for it, if a webhook did */
  deliveryId: string | null;
  /** ISO 8601 timestamps */
  queuedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  artifacts: BuildArtifact[];
}
