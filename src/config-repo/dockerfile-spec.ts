import { posix } from 'node:path';
import { z } from 'zod';

/** Prefix of a `dockerfile` that is in the config repository rather than in the built commit. */
export const CONFIG_PREFIX = 'config:';

/** Most build arguments one definition may pass to its Dockerfile. */
export const MAX_BUILD_ARGS = 64;

/**
 * Where a build's image comes from when its definition names a Dockerfile
 * (`dockerfile: path` or `dockerfile: config:path`, with optional `context` and `buildArgs`).
 * Paths are normalised, relative to the root of their repository, never leaving it.
 */
export interface DockerfileSpec {
  /** `commit`: the Dockerfile and its context are in the built commit; `config`: in the config repository (at the definitions' revision) */
  source: 'commit' | 'config';
  /** the Dockerfile, e.g. `ci/Dockerfile` */
  path: string;
  /** the directory sent to Docker as the build context, `.` for the root; it holds the Dockerfile */
  context: string;
  /** `--build-arg`s, by name */
  buildArgs: Readonly<Record<string, string>>;
}

/** True for a relative path that stays inside its root: normalised, no `..`, no leading `/` or `-`, no NUL. */
function isInsidePath(p: string): boolean {
  return !p.startsWith('/') && !p.startsWith('-') && !p.includes('\0') && posix.normalize(p) === p && !p.split('/').includes('..');
}

const insidePath = z.string().min(1).max(1000).refine(isInsidePath, 'must be a relative path inside the repository (no "..", no leading "/" or "-")');

/** The zod schema of a definition's `dockerfile`: a path, or `config:` and a path. */
export const dockerfileSchema = z
  .string()
  .min(1)
  .max(1000)
  .refine((value) => {
    const path = value.startsWith(CONFIG_PREFIX) ? value.slice(CONFIG_PREFIX.length) : value;
    return path !== '.' && isInsidePath(path);
  }, 'must be a path of a file inside the built commit, or "config:" and a path inside the config repository (no "..", no leading "/" or "-")');

/** The zod schema of a definition's `context`: a directory in the same repository as the Dockerfile (`.` for its root). */
export const contextSchema = insidePath;

/** The zod schema of a definition's `buildArgs`. */
export const buildArgsSchema = z
  .record(
    z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a build argument name'),
    z
      .string()
      .max(4096)
      .refine((v) => !v.includes('\0'), 'must not contain a NUL character'),
  )
  .refine((args) => Object.keys(args).length <= MAX_BUILD_ARGS, `at most ${MAX_BUILD_ARGS} build arguments`);

/**
 * The {@link DockerfileSpec} of validated `dockerfile`, `context` and `buildArgs` values; the
 * context defaults to the Dockerfile's directory.
 * @returns the spec, or the problem with `context` (the Dockerfile is not inside it)
 */
export function toDockerfileSpec(
  dockerfile: string,
  context: string | undefined,
  buildArgs: Readonly<Record<string, string>> | undefined,
): { spec: DockerfileSpec; problem: null } | { spec: null; problem: string } {
  const source = dockerfile.startsWith(CONFIG_PREFIX) ? 'config' : 'commit';
  const path = source === 'config' ? dockerfile.slice(CONFIG_PREFIX.length) : dockerfile;
  const dir = context ?? posix.dirname(path);
  const relative = posix.relative(dir === '.' ? '' : dir, path);
  if (relative === '' || relative.startsWith('../') || relative === '..') {
    return { spec: null, problem: `must hold the Dockerfile ${path}: the context is what Docker gets to read` };
  }
  return { spec: Object.freeze({ source, path, context: dir, buildArgs: Object.freeze({ ...buildArgs }) }), problem: null };
}

/** The Dockerfile's path inside its context (what Docker's `dockerfile` build option takes). */
export function dockerfileInContext(spec: Pick<DockerfileSpec, 'path' | 'context'>): string {
  return posix.relative(spec.context === '.' ? '' : spec.context, spec.path);
}
