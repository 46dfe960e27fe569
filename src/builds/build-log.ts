import { EventEmitter, once } from 'node:events';
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError } from '../errors.js';

/** Appends lines to one build's log. */
export interface BuildLogWriter {
  /** Appends `text` and a newline; the bytes are on disk before any follower hears of them. */
  line(text: string): void;
  /** Marks the log complete: followers drain what is left and end. Idempotent. */
  close(): void;
}

/** The build logs: one append-only file per build at `<dir>/<build-id>.log`. */
export interface BuildLogs {
  /** Creates (or truncates) the log of `buildId` and returns its writer. */
  open(buildId: string): BuildLogWriter;
  /** The whole log, or null when there is none. */
  read(buildId: string): Promise<Buffer | null>;
  /**
   * Yields the log from byte `from` on, chunk by chunk, until the writer closes it (or at
   * once, when no writer is open in this process). No byte is skipped or repeated.
   */
  follow(buildId: string, from?: number): AsyncGenerator<Buffer>;
  /** Deletes the log of a build that is not being written (retention). Idempotent. */
  remove(buildId: string): Promise<void>;
}

interface LiveLog {
  fd: number;
  size: number;
  closed: boolean;
  events: EventEmitter;
}

const ID = /^[a-z0-9-]{1,64}$/;

/** Checks a build id before it becomes part of a file name. @throws AppError `NOT_FOUND` (404) */
export function assertBuildId(id: string): string {
  if (!ID.test(id)) throw new AppError('NOT_FOUND', 'no such build', { status: 404 });
  return id;
}

/** Creates the build log store over `dir` (`<dataDir>/logs`), created if missing. */
export async function createBuildLogs(options: { dir: string }): Promise<BuildLogs> {
  const { dir } = options;
  await mkdir(dir, { recursive: true });
  const live = new Map<string, LiveLog>();
  const pathOf = (id: string) => join(dir, `${assertBuildId(id)}.log`);

  return {
    open(buildId) {
      const state: LiveLog = { fd: openSync(pathOf(buildId), 'w'), size: 0, closed: false, events: new EventEmitter() };
      state.events.setMaxListeners(0);
      live.set(buildId, state);
      return {
        line(text) {
          if (state.closed) return;
          const bytes = Buffer.from(`${text}\n`);
          writeSync(state.fd, bytes);
          state.size += bytes.length;
          state.events.emit('change');
        },
        close() {
          if (state.closed) return;
          state.closed = true;
          closeSync(state.fd);
          live.delete(buildId);
          state.events.emit('change');
        },
      };
    },
    async remove(buildId) {
      if (live.has(buildId)) return;
      await rm(pathOf(buildId), { force: true });
    },
    async read(buildId) {
      try {
        return await readFile(pathOf(buildId));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
    },
    async *follow(buildId, from = 0) {
      const path = pathOf(buildId);
      let offset = from;
      const state = live.get(buildId);
      for (;;) {
        const changed = state && !state.closed ? once(state.events, 'change') : null;
        let handle;
        try {
          handle = await open(path, 'r');
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
          throw err;
        }
        try {
          const { size } = await handle.stat();
          while (offset < size) {
            const chunk = Buffer.alloc(Math.min(64 * 1024, size - offset));
            const { bytesRead } = await handle.read(chunk, 0, chunk.length, offset);
            if (bytesRead === 0) break;
            offset += bytesRead;
            yield chunk.subarray(0, bytesRead);
          }
        } finally {
          await handle.close();
        }
        if (changed === null) return;
        await changed;
      }
    },
  };
}
