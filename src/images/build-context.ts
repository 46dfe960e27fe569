import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { pack } from 'tar-stream';
import { toCanonicalJson } from '../builds/cache-key.js';

/** Repository of the images built from Dockerfiles: each is tagged `autobuilder/env:<sha256>`. */
export const ENV_IMAGE_REPOSITORY = 'autobuilder/env';

/** Label every env image carries, with its content hash as value. */
export const ENV_HASH_LABEL = 'autobuilder.env-hash';

/** The tag of the env image with content hash `hash`. */
export const toEnvImageTag = (hash: string): string => `${ENV_IMAGE_REPOSITORY}:${hash}`;

/** True for a name of an env image (`autobuilder/env:<64 hex>`). */
export const isEnvImageTag = (name: string): boolean => /^autobuilder\/env:[0-9a-f]{64}$/.test(name);

/** One file of a build context: a regular file, an executable one, or a symbolic link (whose content is its target). */
export interface ContextFile {
  /** path relative to the context directory, `/`-separated */
  path: string;
  kind: 'file' | 'executable' | 'symlink';
  /** git's blob id of the content (hex), which names it as git does: `sha1("blob <size>\0" + content)` */
  id: string;
  /** bytes of the content */
  size: number;
}

/** How big a build context may be: files and bytes (the sum of their sizes). */
export interface ContextLimits {
  maxFiles: number;
  maxBytes: number;
}

/** Limits of a context in the built commit, read from the git mirror for each image build. */
export const COMMIT_CONTEXT_LIMITS: ContextLimits = Object.freeze({ maxFiles: 10_000, maxBytes: 256 * 1024 ** 2 });

/**
 * Limits of a context in the config repository: its files are read when a build is decided,
 * held until it runs and carried in a worker's job, so they are kept small.
 */
export const CONFIG_CONTEXT_LIMITS: ContextLimits = Object.freeze({ maxFiles: 1_000, maxBytes: 8 * 1024 ** 2 });

/** The files of a context as listed, and why it cannot be built (over its limits, not there), or null. */
export interface ContextListing {
  files: ContextFile[];
  problem: string | null;
}

/** git's blob id (SHA-1, hex) of `content`, as `git hash-object` gives it. */
export function toGitBlobId(content: Uint8Array): string {
  return createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
}

/**
 * The content hash of an env image: sha256 (hex) of the canonical JSON of what makes it — the
 * Dockerfile's path in the context, every context file (path, kind, blob id), the build
 * arguments — and whether it is built for a pull request from a fork (its images are never
 * those of trusted builds, even for the same files). Its tag is {@link toEnvImageTag}.
 */
export function toEnvImageHash(input: {
  dockerfile: string;
  files: readonly ContextFile[];
  buildArgs: Readonly<Record<string, string>>;
  fork: boolean;
  /** why the context cannot be built, when known: a listing cut short must not pass for a complete one */
  problem?: string | null;
}): string {
  const files = [...input.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)).map((f) => [f.path, f.kind, f.id]);
  const doc = { v: 1, dockerfile: input.dockerfile, files, buildArgs: input.buildArgs, fork: input.fork, ...(input.problem ? { problem: input.problem } : {}) };
  return createHash('sha256').update(toCanonicalJson(doc)).digest('hex');
}

/** Why `path` cannot be a path inside a context (empty, absolute, `.` or `..` components), or null. */
function badPath(path: string): string | null {
  if (path === '' || path.startsWith('/')) return 'is not a relative path';
  if (path.split('/').some((part) => part === '' || part === '.' || part === '..')) return 'has an empty, "." or ".." component';
  return null;
}

/**
 * Checks a listed context before anything of it is sent to Docker: every path stays inside
 * it, the Dockerfile is a regular file in it, and, once the targets are known, no symbolic
 * link points outside it (an absolute target, or one that climbs above the context).
 * @param targets - the target of each symbolic link by its path; absent: not checked yet
 * @returns the first problem found, as a sentence, or null
 */
export function checkContext(files: readonly ContextFile[], dockerfile: string, targets?: ReadonlyMap<string, string>): string | null {
  for (const file of files) {
    const bad = badPath(file.path);
    if (bad !== null) return `the context path ${JSON.stringify(file.path)} ${bad}`;
    if (file.kind !== 'symlink' || targets === undefined) continue;
    const target = targets.get(file.path);
    if (target === undefined) return `the target of the symbolic link ${file.path} could not be read`;
    const resolved = posix.normalize(posix.join(posix.dirname(file.path), target));
    if (target.startsWith('/') || target.includes('\0') || resolved === '..' || resolved.startsWith('../')) {
      return `the symbolic link ${file.path} points outside the context (to ${JSON.stringify(target)})`;
    }
  }
  const found = files.find((f) => f.path === dockerfile);
  if (found === undefined) return `the Dockerfile ${dockerfile} is not in the context`;
  if (found.kind === 'symlink') return `the Dockerfile ${dockerfile} is a symbolic link; it must be a file`;
  return null;
}

/**
 * A tar stream of a build context, as Docker's build API takes it: every file at its path
 * with mode 0644 or 0755, links as links, owned by root and dated at the epoch, so equal
 * files always make equal archives.
 * @param contents - the content of each file by path (a link's is its target)
 */
export function packContext(files: readonly ContextFile[], contents: ReadonlyMap<string, Buffer>): Readable {
  const tar = pack();
  const mtime = new Date(0);
  (async () => {
    for (const file of files) {
      const content = contents.get(file.path) ?? Buffer.alloc(0);
      const header = { name: file.path, uid: 0, gid: 0, mtime };
      await new Promise<void>((resolve, reject) => {
        const done = (err?: Error | null) => (err ? reject(err) : resolve());
        if (file.kind === 'symlink') tar.entry({ ...header, type: 'symlink', linkname: content.toString('utf8'), mode: 0o777 }, done);
        else tar.entry({ ...header, type: 'file', mode: file.kind === 'executable' ? 0o755 : 0o644, size: content.length }, content, done);
      });
    }
    tar.finalize();
  })().catch((err: unknown) => tar.destroy(err instanceof Error ? err : new Error(String(err))));
  return tar as unknown as Readable;
}
