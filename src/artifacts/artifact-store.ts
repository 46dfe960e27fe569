import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../errors.js';

const DIGEST = /^[0-9a-f]{64}$/;

/** A stored artifact: its sha256 digest (64 lowercase hex) and size in bytes. */
export interface StoredArtifact {
  digest: string;
  size: number;
}

/** Content-addressed artifact store: one file per sha256 digest, written once, never changed. */
export interface ArtifactStore {
  /** A fresh path on the store's filesystem to write an artifact into before {@link put}. */
  tempPath(): Promise<string>;
  /**
   * Hashes the file at `tempPath` and moves it to `sha256/ab/cd/<digest>` with rename(2);
   * when that digest is already stored the temp file is dropped (one copy per digest).
   */
  put(tempPath: string): Promise<StoredArtifact>;
  /** Size of a stored artifact, or null when the digest is unknown. @throws AppError `BAD_REQUEST` for a malformed digest */
  stat(digest: string): Promise<StoredArtifact | null>;
  /** Absolute path of a stored artifact. @throws AppError `BAD_REQUEST` for a malformed digest */
  pathOf(digest: string): string;
  /** Every stored artifact with its size and modification time (ms since the epoch). */
  list(): AsyncGenerator<StoredArtifact & { mtimeMs: number }>;
  /** Deletes a stored artifact (idempotent). Only garbage collection calls this. */
  remove(digest: string): Promise<void>;
  /** Deletes temp files older than `olderThanMs` (ms since the epoch) left by interrupted builds. */
  removeStaleTemp(olderThanMs: number): Promise<number>;
}

/** True when `value` is a sha256 digest as the store writes them (64 lowercase hex). */
export function isDigest(value: string): boolean {
  return DIGEST.test(value);
}

/**
 * Creates the store over `root` (`<dataDir>/artifacts`). Paths are built from digests only,
 * never from names that came from users or payloads.
 */
export function createArtifactStore(options: { root: string }): ArtifactStore {
  const { root } = options;
  const pathOf = (digest: string): string => {
    if (!isDigest(digest)) throw new AppError('BAD_REQUEST', 'a digest is 64 lowercase hex characters (sha256)', { status: 400 });
    return join(root, 'sha256', digest.slice(0, 2), digest.slice(2, 4), digest);
  };
  return {
    pathOf,
    async tempPath() {
      const dir = join(root, 'tmp');
      await mkdir(dir, { recursive: true });
      return join(dir, randomBytes(12).toString('hex'));
    },
    async put(tempPath) {
      const hash = createHash('sha256');
      await pipeline(createReadStream(tempPath), hash);
      const digest = hash.digest('hex');
      const { size } = await stat(tempPath);
      const target = pathOf(digest);
      await mkdir(dirname(target), { recursive: true });
      try {
        await stat(target);
        await unlink(tempPath);
      } catch {
        await rename(tempPath, target);
      }
      return { digest, size };
    },
    async *list() {
      const top = join(root, 'sha256');
      const names = async (dir: string) => readdir(dir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err)));
      for (const a of await names(top)) {
        for (const b of await names(join(top, a))) {
          for (const digest of await names(join(top, a, b))) {
            if (!isDigest(digest)) continue;
            const s = await stat(join(top, a, b, digest));
            yield { digest, size: s.size, mtimeMs: s.mtimeMs };
          }
        }
      }
    },
    async remove(digest) {
      await unlink(pathOf(digest)).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
    },
    async removeStaleTemp(olderThanMs) {
      const dir = join(root, 'tmp');
      let removed = 0;
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        const s = await stat(join(dir, name)).catch(() => null);
        if (s !== null && s.mtimeMs < olderThanMs) {
          await unlink(join(dir, name)).catch(() => undefined);
          removed++;
        }
      }
      return removed;
    },
    async stat(digest) {
      try {
        const s = await stat(pathOf(digest));
        return { digest, size: s.size };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
    },
  };
}
