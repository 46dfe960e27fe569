import { z } from 'zod';
import { findOverlap, MAX_CACHES, mountTargetSchema } from '../config/container-path.js';

/**
 * The persistent caches of a build script: directories of its container mounted from its
 * repository's caches (see src/snapshots/caches.ts), and the most bytes each may hold.
 */
export interface CacheSpec {
  /** absolute container paths, in the order listed; none overlaps another */
  paths: string[];
  /** bytes each cache may hold, as `resources.cacheMiB` asks (capped by the server's `builds.cacheMaxMiB`); null: the server's cap */
  maxBytes: number | null;
}

/**
 * A definition's `caches`: at most {@link MAX_CACHES} container paths (see
 * `mountTargetSchema`: absolute, normalised, not `/`, not the workspace or inside it), none the
 * same as or inside another.
 */
export const cachesSchema = z
  .array(mountTargetSchema)
  .max(MAX_CACHES, `at most ${MAX_CACHES} caches`)
  .superRefine((paths, ctx) => {
    const overlap = findOverlap(paths);
    if (overlap === null) return;
    const [i, j] = overlap;
    ctx.addIssue({ code: 'custom', path: [j], message: `overlaps ${JSON.stringify(paths[i])}: a cache may not be inside another` });
  });

/** A {@link CacheSpec} from a definition's `caches` and `resources.cacheMiB`. */
export function toCacheSpec(paths: readonly string[] | undefined, cacheMiB: number | undefined): CacheSpec {
  return { paths: [...(paths ?? [])], maxBytes: cacheMiB === undefined ? null : cacheMiB * 1024 * 1024 };
}
