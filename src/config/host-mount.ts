import { stat } from 'node:fs/promises';
import { posix } from 'node:path';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { findOverlap, mountTargetSchema } from './container-path.js';

/** Most host mounts the server config may list. */
export const MAX_HOST_MOUNTS = 32;

/**
 * One host mount of the server config (`builds.mounts`, mistry's `mounts`): the host path
 * `host` (a file or directory that must exist when the server starts) bound at `container`
 * in every build container; read-only unless `readOnly: false`, and left out of builds of
 * pull requests from forks unless `forks: true`.
 */
export const hostMountSchema = z
  .object({
    host: z
      .string()
      .regex(/^\/[^\0]*$/, 'must be an absolute path on the host')
      .refine(
        (p) => p !== '/' && posix.normalize(p) === p && !p.endsWith('/'),
        'must be a normalised absolute path (no "." or "..", no trailing "/"), not "/"',
      ),
    container: mountTargetSchema,
    readOnly: z.boolean().default(true),
    forks: z.boolean().default(false),
  })
  .strict();

/** The host mounts of the server config: at most {@link MAX_HOST_MOUNTS}, no container path the same as or inside another's. */
export const hostMountsSchema = z
  .array(hostMountSchema)
  .max(MAX_HOST_MOUNTS, `at most ${MAX_HOST_MOUNTS} mounts`)
  .superRefine((mounts, ctx) => {
    const overlap = findOverlap(mounts.map((m) => m.container));
    if (overlap === null) return;
    const [i, j] = overlap;
    ctx.addIssue({ code: 'custom', path: [j, 'container'], message: `overlaps the container path of mount ${i}` });
  })
  .default([]);

/** One validated host mount. */
export type HostMount = z.infer<typeof hostMountSchema>;

/**
 * Checks that the host path of every mount exists (Docker would otherwise refuse each build's
 * container, or make an empty directory there).
 * @throws AppError `CONFIG_INVALID` naming every mount whose host path is missing
 */
export async function assertHostMountsExist(mounts: readonly HostMount[]): Promise<void> {
  const problems: string[] = [];
  for (const [i, mount] of mounts.entries()) {
    await stat(mount.host).catch((err: NodeJS.ErrnoException) =>
      problems.push(`  builds.mounts.${i}.host: ${mount.host} cannot be mounted (${err.code ?? err.message})`),
    );
  }
  if (problems.length > 0) {
    throw new AppError('CONFIG_INVALID', `invalid configuration (${problems.length} problem(s)):\n${problems.join('\n')}`, { status: 500 });
  }
}
