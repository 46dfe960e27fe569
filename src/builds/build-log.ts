import { EventEmitter, once } from 'node:events';
import { mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError } from '../errors.js';
import { createLineIndex, indexFile, totalLines, type LineIndex } from './build-log-index.js';
import { openBuildLogWriter, type BuildLogBus, type BuildLogWriter, type LiveLog, type LogAppend } from './build-log-writer.js';
import { readBuildLogLines, type LineQuery, type LogLines } from './read-build-log-lines.js';

export type { BuildLogWriter, LogAppend } from './build-log-writer.js';
export type { LineQuery, LogLines } from './read-build-log-lines.js';

/** Size and line count of a log. */
export interface LogStat {
  /** bytes */
  size: number;
  /** lines, counting a last line without a newline */
  lines: number;
  /** true while a writer in this process appends to it */
  live: boolean;
}

/** The build logs: one append-only file per build at `<dir>/<build-id>.log`. */
export interface BuildLogs {
  /** Creates (or truncates) the log of `buildId` and returns its writer. */
  open(buildId: string): BuildLogWriter;
  /** The whole log, or null when there is none. */
  read(buildId: string): Promise<Buffer | null>;
  /**
   * Yields the log from byte `from` on, chunk by chunk, until the writer closes it (or at
   * once, when no writer is open in this process), or until `signal` aborts. No byte is
   * skipped or repeated. Chunks are at most 64 KiB and may end inside a line.
   */
  follow(buildId: string, from?: number, signal?: AbortSignal): AsyncGenerator<Buffer>;
  /** Deletes the log of a build that is not being written (retention). Idempotent. */
  remove(buildId: string): Promise<void>;
  /** Size and line count of a log, or null when there is none. */
  stat(buildId: string): Promise<LogStat | null>;
  /**
   * Whole lines by line number, through a sparse line index (kept while writing, built by one
   * scan for a finished log), so a window anywhere in a 100 MB log costs a few reads. At
   * most `count` (≤ 10,000) lines and about 4 MiB; null when there is no log.
   */
  readLines(buildId: string, query: LineQuery): Promise<LogLines | null>;
  /** The log's file, for ranged reads. @throws AppError `NOT_FOUND` for an unsafe id */
  pathOf(buildId: string): string;
  /** Calls `listener` after each line is on disk, synchronously; returns the unsubscribe. */
  onAppend(listener: (append: LogAppend) => void): () => void;
  /** Calls `listener` when a writer of this process closes a log; returns the unsubscribe. */
  onClose(listener: (buildId: string) => void): () => void;
}

const ID = /^[a-z0-9-]{1,64}$/;

/** Checks a build id before it becomes part of a file name. @throws AppError `NOT_FOUND` (404) */
export function assertBuildId(id: string): string {
  if (!ID.test(id)) throw new AppError('NOT_FOUND', 'no such build', { status: 404 });
  return id;
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

/**
 * Creates the build log store over `dir` (`<dataDir>/logs`), created if missing.
 * `onWriteError` hears of a log whose write failed (disk full): its later lines are dropped.
 */
export async function createBuildLogs(options: { dir: string; onWriteError?: (buildId: string, err: Error) => void }): Promise<BuildLogs> {
  const { dir } = options;
  await mkdir(dir, { recursive: true });
  const live = new Map<string, LiveLog>();
  /** indexes of logs no writer of this process holds, newest use last (a small LRU) */
  const finished = new Map<string, LineIndex>();
  const bus: BuildLogBus = new EventEmitter();
  bus.setMaxListeners(0);
  const pathOf = (id: string) => join(dir, `${assertBuildId(id)}.log`);

  /** The index of a log as it is now: the writer's, else one scan (extended if the file grew). */
  async function indexOf(buildId: string): Promise<{ index: LineIndex; live: boolean } | null> {
    const writing = live.get(buildId);
    if (writing !== undefined) return { index: { ...writing.index, marks: writing.index.marks }, live: true };
    const path = pathOf(buildId);
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
    let index = finished.get(buildId);
    finished.delete(buildId);
    if (index === undefined || index.size > size) index = createLineIndex();
    if (index.size < size) await indexFile(path, index, size);
    finished.set(buildId, index);
    if (finished.size > 64) finished.delete(finished.keys().next().value as string);
    return { index, live: false };
  }

  return {
    open(buildId) {
      const { live: state, writer } = openBuildLogWriter({
        buildId,
        path: pathOf(buildId),
        bus,
        onClosed: (index) => {
          live.delete(buildId);
          finished.set(buildId, index);
        },
        onWriteError: options.onWriteError,
      });
      finished.delete(buildId);
      live.set(buildId, state);
      return writer;
    },
    async remove(buildId) {
      if (live.has(buildId)) return;
      finished.delete(buildId);
      await rm(pathOf(buildId), { force: true });
    },
    async read(buildId) {
      try {
        return await readFile(pathOf(buildId));
      } catch (err) {
        if (isMissing(err)) return null;
        throw err;
      }
    },
    async *follow(buildId, from = 0, signal) {
      const path = pathOf(buildId);
      let offset = from;
      const state = live.get(buildId);
      while (signal?.aborted !== true) {
        const changed = state && !state.closed ? once(state.events, 'change', signal === undefined ? {} : { signal }).catch(() => null) : null;
        let handle;
        try {
          handle = await open(path, 'r');
        } catch (err) {
          if (isMissing(err)) return;
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
    async stat(buildId) {
      const found = await indexOf(buildId);
      return found === null ? null : { size: found.index.size, lines: totalLines(found.index), live: found.live };
    },
    async readLines(buildId, query) {
      const found = await indexOf(buildId);
      return found === null ? null : readBuildLogLines(pathOf(buildId), found, query);
    },
    pathOf,
    onAppend(listener) {
      bus.on('append', listener);
      return () => bus.off('append', listener);
    },
    onClose(listener) {
      bus.on('close', listener);
      return () => bus.off('close', listener);
    },
  };
}
