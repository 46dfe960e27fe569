import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { CliError, EXIT } from './exit-codes.js';

/** A file {@link saveArtifact} wrote. */
export interface SavedArtifact {
  /** the path written */
  file: string;
  /** sha256 of the bytes written, 64 lowercase hex */
  digest: string;
  /** bytes written */
  size: number;
}

const DIGEST = /^[0-9a-f]{64}$/;

/** True when `value` is a sha256 digest as the API gives them (64 lowercase hex). */
export function isArtifactDigest(value: string): boolean {
  return DIGEST.test(value);
}

/** The digest an artifact answer names in its `ETag` (`"<sha256>"`: the API's artifacts are content-addressed), or null. */
export function toEtagDigest(etag: string | null): string | null {
  const value = etag?.replace(/^W\//, '').replace(/^"|"$/g, '') ?? '';
  return isArtifactDigest(value) ? value : null;
}

/**
 * Streams an artifact answer's body into `file` (never whole in memory), hashing it on the
 * way: the bytes go to a temporary file beside it, which is renamed to `file` only when their
 * sha256 is `expectedDigest` (when given); otherwise it is removed and nothing is left.
 * @throws CliError (exit 3) on a digest mismatch or a broken transfer; (exit 2) when the file cannot be written
 */
export async function saveArtifact(response: Response, file: string, expectedDigest: string | null): Promise<SavedArtifact> {
  if (response.body === null) throw new CliError(EXIT.server, `the server sent no body for ${basename(file)}`);
  const temporary = join(dirname(file), `.${basename(file)}.${randomBytes(4).toString('hex')}.partial`);
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
  });
  try {
    await pipeline(Readable.fromWeb(response.body as WebReadableStream<Uint8Array>), tap, createWriteStream(temporary, { flags: 'wx', mode: 0o644 }));
  } catch (err) {
    await rm(temporary, { force: true });
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'ENOENT' || code === 'EEXIST' || code === 'ENOTDIR' || code === 'EROFS' || code === 'ENOSPC') {
      throw new CliError(EXIT.usage, `cannot write ${file}: ${(err as Error).message}`, { cause: err });
    }
    throw new CliError(EXIT.server, `the download of ${basename(file)} broke off after ${size} bytes: ${(err as Error).message}`, { cause: err });
  }
  const digest = hash.digest('hex');
  if (expectedDigest !== null && digest !== expectedDigest) {
    await rm(temporary, { force: true });
    throw new CliError(EXIT.server, `${basename(file)}: the download's sha256 is ${digest}, not the artifact's ${expectedDigest}; nothing was saved`);
  }
  try {
    await rename(temporary, file);
  } catch (err) {
    await rm(temporary, { force: true });
    throw new CliError(EXIT.usage, `cannot write ${file}: ${(err as Error).message}`, { cause: err });
  }
  return { file, digest, size };
}

/**
 * Checks an artifact name before it becomes a file name: a plain name, no directory part,
 * not `.` or `..` (the server's names are the definitions' `artifact`, but a client trusts
 * nothing it writes to disk).
 * @throws CliError (exit 3) otherwise
 */
export function assertArtifactFileName(name: string): string {
  if (name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name) || name.length > 255) {
    throw new CliError(EXIT.server, `the server named an artifact ${JSON.stringify(name.slice(0, 100))}, which is not a plain file name`);
  }
  return name;
}
