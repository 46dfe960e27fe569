import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ArtifactStore, StoredArtifact } from '../artifacts/artifact-store.js';
import { AppError, toMessage } from '../errors.js';

/** Attempts of one upload before the build ends `error`. */
const UPLOAD_TRIES = 4;

/** sha256 (hex) and size (bytes) of the file at `path`, read as a stream. */
async function digestOf(path: string): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return { digest: hash.digest('hex'), size: (await stat(path)).size };
}

/**
 * The artifact store of a build on a worker: temp files in `tmpDir`, and `put` uploads the
 * file to the server (`PUT <serverUrl>/api/workers/builds/<id>/artifacts/<name>?attempt=N`,
 * the worker token as bearer, the worker's sha256 in `X-Autobuilder-Sha256`). The server
 * hashes what it receives and keeps it only when both digests agree; an upload cut off
 * midway leaves nothing stored there and is tried again (up to {@link UPLOAD_TRIES} times,
 * waiting 0.5, 1, 2 s). The temp file is removed once uploaded.
 * @throws AppError `CONTAINER_FAILED` from `put` when the server refused every try (the build ends `error`)
 */
export function createArtifactUploader(options: {
  serverUrl: string;
  token: string;
  buildId: string;
  attempt: number;
  /** the artifact's file name (the definition's `artifact`) */
  name: string;
  tmpDir: string;
  fetch?: typeof globalThis.fetch;
}): Pick<ArtifactStore, 'tempPath' | 'put'> {
  const doFetch = options.fetch ?? globalThis.fetch;
  const url = `${options.serverUrl.replace(/\/+$/, '')}/api/workers/builds/${encodeURIComponent(options.buildId)}/artifacts/${encodeURIComponent(options.name)}?attempt=${options.attempt}`;
  return {
    async tempPath() {
      await mkdir(options.tmpDir, { recursive: true });
      return join(options.tmpDir, `${options.buildId}-${randomBytes(6).toString('hex')}.tmp`);
    },
    async put(tempPath): Promise<StoredArtifact> {
      const { digest, size } = await digestOf(tempPath);
      let problem = '';
      for (let tries = 1; tries <= UPLOAD_TRIES; tries++) {
        try {
          const response = await doFetch(url, {
            method: 'PUT',
            headers: {
              authorization: `Bearer ${options.token}`,
              'content-type': 'application/octet-stream',
              'content-length': String(size),
              'x-autobuilder-sha256': digest,
            },
            body: Readable.toWeb(createReadStream(tempPath)) as ReadableStream<Uint8Array>,
            duplex: 'half',
          } as RequestInit);
          const text = await response.text();
          if (response.ok) {
            const stored = JSON.parse(text) as { digest: string; size: number };
            await unlink(tempPath).catch(() => undefined);
            return { digest: stored.digest, size: stored.size };
          }
          problem = `${response.status}: ${text.slice(0, 300)}`;
          // a refusal that will not change (bad token, no such attempt, digest mismatch) is not retried
          if (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429) break;
        } catch (err) {
          problem = toMessage(err);
        }
        if (tries < UPLOAD_TRIES) await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** (tries - 1)));
      }
      throw new AppError('CONTAINER_FAILED', `artifact ${options.name} could not be uploaded to the server: ${problem}`);
    },
  };
}
