import { posix } from 'node:path';
import { z } from 'zod';

/** Where a build's workspace is mounted in its container, and where its command starts. */
export const CONTAINER_WORKDIR = '/workspace';

/** Most persistent caches one build script may declare. */
export const MAX_CACHES = 8;

/** The kernel's and Docker's own directories of a container: no mount may cover them. */
const RESERVED = ['/proc', '/sys', '/dev'] as const;

/**
 * True when the absolute, normalised paths `a` and `b` are the same directory or one lies
 * inside the other (`/a` and `/a/b` overlap, `/a` and `/ab` do not).
 */
export function isOverlapping(a: string, b: string): boolean {
  const within = (inner: string, outer: string) => inner === outer || inner.startsWith(outer === '/' ? '/' : `${outer}/`);
  return within(a, b) || within(b, a);
}

/**
 * A directory of a build container that receives a mount (a persistent cache of a definition,
 * a host mount of the server config): an absolute, normalised path of segments of letters,
 * digits, `.`, `_`, `@` and `-` (no `.` or `..` segment, at most 200 characters), not `/`,
 * not the workspace ({@link CONTAINER_WORKDIR}) nor inside it, and not `/proc`, `/sys` or
 * `/dev`. The narrow alphabet keeps cache names on disk readable and unambiguous (see
 * `toCacheName` in src/snapshots/caches.ts).
 */
export const mountTargetSchema = z
  .string()
  .max(200, 'must be at most 200 characters')
  .regex(/^(\/[A-Za-z0-9._@-]+)+$/, 'must be an absolute path in the container (segments of letters, digits, ".", "_", "@" or "-"; not "/")')
  .refine((p) => posix.normalize(p) === p && !p.split('/').some((s) => s === '.' || s === '..'), 'must be a normalised path (no "." or ".." segment)')
  .refine((p) => !isOverlapping(p, CONTAINER_WORKDIR), `must not be the workspace (${CONTAINER_WORKDIR}) or inside it`)
  .refine((p) => !RESERVED.some((r) => isOverlapping(p, r)), 'must not be /proc, /sys or /dev, or inside them');

/**
 * Indices `[i, j]` (i < j) of the first two paths of `paths` that overlap (see
 * {@link isOverlapping}), or null when none do.
 */
export function findOverlap(paths: readonly string[]): [number, number] | null {
  for (let i = 0; i < paths.length; i++) {
    for (let j = i + 1; j < paths.length; j++) {
      if (isOverlapping(paths[i] as string, paths[j] as string)) return [i, j];
    }
  }
  return null;
}
