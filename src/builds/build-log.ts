import { EventEmitter, once } from 'node:events';
import { close as closeFile, closeSync, fdatasync, openSync, write, writeSync } from 'node:fs';
import { mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError } from '../errors.js';
import { toShownLine } from './line-splitter.js';

/**
 * Appends lines to one build's log. Lines are on disk before any follower hears of them,
 * and in the order they were given, whichever method wrote them.
 */
export interface BuildLogWriter {
  /**
   * Appends `text` and a newline: at once (a synchronous write) when no batch of
   * {@link BuildLogWriter.lines} is being written, else after those.
   */
  line(text: string): void;
  /**
   * Appends each of `texts` with its newline, written off the event loop in one write with
   * whatever else is queued (a build's output: a disk that is slow to take a flood never
   * holds the server up). Resolves once they are on disk and heard of: the caller's
   * back-pressure. A write that fails drops the lines (the build goes on) and is reported
   * once through `onWriteError`.
   */
  lines(texts: readonly string[]): Promise<void>;
  /** Marks the log complete, once what is queued is written: followers drain what is left and end. Idempotent. */
  close(): void;
  /** bytes given to the log so far (written or queued) */
  readonly size: number;
}

/** One line appended to a live log, as {@link BuildLogs.onAppend} listeners hear of it. */
export interface LogAppend {
  buildId: string;
  /** byte offset where the line starts in the log file */
  start: number;
  /** byte offset after the line and its newline */
  end: number;
  /** the line, without its newline */
  text: string;
  /** when it was written to the file, in epoch milliseconds (fractional) */
  at: number;
}

/** A run of whole lines read from a log by line number (see {@link BuildLogs.readLines}). */
export interface LogLines {
  /** 1-based number of the first line in `lines` */
  start: number;
  /** the lines without their newlines; a line over 64 KiB is cut and ends in a marker */
  lines: string[];
  /** how many lines the log had when it was read */
  total: number;
  /** byte offset where `lines` start, and where they end (after the last newline) */
  startOffset: number;
  endOffset: number;
  /** bytes in the log when it was read */
  size: number;
  /** false while a writer in this process still appends to the log */
  complete: boolean;
}

/** Size and line count of a log. */
export interface LogStat {
  /** bytes */
  size: number;
  /** lines, counting a last line without a newline */
  lines: number;
  /** true while a writer in this process appends to it */
  live: boolean;
}

/** Which lines {@link BuildLogs.readLines} returns: from line `start` (1-based) on, or the last `tail`. */
export type LineQuery = { start: number; count: number } | { tail: number };

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

/** Every STRIDE lines the index remembers where a line starts. */
const STRIDE = 1024;
/** Lines longer than this are cut in {@link BuildLogs.readLines} answers (the raw log has them whole). */
export const MAX_LINE_BYTES = 64 * 1024;
const MAX_COUNT = 10_000;
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;
const CHUNK = 256 * 1024;
/** Bytes of a batch-written log after which they are flushed to disk (fdatasync) before more are written. */
const SYNC_EVERY_BYTES = 4 * 1024 * 1024;
const NEWLINE = 0x0a;

/** Sparse line index: `marks[k]` is the byte offset where line `k * STRIDE + 1` starts. */
interface LineIndex {
  /** bytes covered */
  size: number;
  /** newline-terminated lines in those bytes */
  lines: number;
  /** offset after the last newline */
  lastEnd: number;
  marks: number[];
}

interface LiveLog {
  fd: number;
  closed: boolean;
  index: LineIndex;
  events: EventEmitter;
}

const ID = /^[a-z0-9-]{1,64}$/;

/** Checks a build id before it becomes part of a file name. @throws AppError `NOT_FOUND` (404) */
export function assertBuildId(id: string): string {
  if (!ID.test(id)) throw new AppError('NOT_FOUND', 'no such build', { status: 404 });
  return id;
}

/** Extends `index` over `bytes`, which sit at `index.size` in the log. */
function indexBytes(index: LineIndex, bytes: Buffer): void {
  let at = bytes.indexOf(NEWLINE);
  while (at !== -1) {
    index.lines += 1;
    index.lastEnd = index.size + at + 1;
    if (index.lines % STRIDE === 0) index.marks.push(index.lastEnd);
    at = bytes.indexOf(NEWLINE, at + 1);
  }
  index.size += bytes.length;
}

const totalLines = (index: LineIndex): number => index.lines + (index.size > index.lastEnd ? 1 : 0);

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
  const bus = new EventEmitter<{ append: [LogAppend]; close: [string] }>();
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
    if (index === undefined || index.size > size) index = { size: 0, lines: 0, lastEnd: 0, marks: [0] };
    if (index.size < size) {
      const handle = await open(path, 'r');
      try {
        const buffer = Buffer.alloc(1024 * 1024);
        while (index.size < size) {
          const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, size - index.size), index.size);
          if (bytesRead === 0) break;
          indexBytes(index, buffer.subarray(0, bytesRead));
        }
      } finally {
        await handle.close();
      }
    }
    finished.set(buildId, index);
    if (finished.size > 64) finished.delete(finished.keys().next().value as string);
    return { index, live: false };
  }

  return {
    open(buildId) {
      const state: LiveLog = {
        fd: openSync(pathOf(buildId), 'w'),
        closed: false,
        index: { size: 0, lines: 0, lastEnd: 0, marks: [0] },
        events: new EventEmitter(),
      };
      state.events.setMaxListeners(0);
      finished.delete(buildId);
      live.set(buildId, state);
      /** batches given to `lines` and not yet written, oldest first */
      const queue: { texts: readonly string[]; bytes: Buffer }[] = [];
      let queuedBytes = 0;
      let writing = false;
      let closing = false;
      let failed = false;
      let drained: (() => void)[] = [];
      let unsynced = 0;
      /** Records lines that are on disk in the index and tells followers and listeners. */
      const written = (texts: readonly string[], bytes: Buffer): void => {
        let start = state.index.size;
        indexBytes(state.index, bytes);
        state.events.emit('change');
        const at = performance.timeOrigin + performance.now();
        for (const text of texts) {
          const end = start + Buffer.byteLength(text) + 1;
          bus.emit('append', { buildId, start, end, text, at });
          start = end;
        }
      };
      const finishClose = (): void => {
        state.closed = true;
        live.delete(buildId);
        finished.set(buildId, state.index);
        state.events.emit('change');
        bus.emit('close', buildId);
      };
      /** Writes what is queued, one batch of batches at a time, on libuv's thread pool. */
      const pump = (): void => {
        if (queue.length === 0 || failed) {
          writing = false;
          queue.length = 0;
          queuedBytes = 0;
          const waiters = drained;
          drained = [];
          for (const resolve of waiters) resolve();
          if (closing) closeFile(state.fd, finishClose);
          return;
        }
        writing = true;
        const batches = queue.splice(0, queue.length);
        const bytes = batches.length === 1 ? (batches[0] as { bytes: Buffer }).bytes : Buffer.concat(batches.map((b) => b.bytes));
        const put = (offset: number): void => {
          write(state.fd, bytes, offset, bytes.length - offset, null, (err, n) => {
            if (err !== null) {
              failed = true;
              options.onWriteError?.(buildId, err);
            } else if (offset + n < bytes.length) {
              put(offset + n);
              return;
            } else {
              queuedBytes -= bytes.length;
              written(
                batches.flatMap((b) => b.texts),
                bytes,
              );
              unsynced += bytes.length;
              if (unsynced >= SYNC_EVERY_BYTES) {
                // a flood's dirty pages flushed a little at a time, in the thread pool, not all at a
                // file system commit that the database's own fsync (the webhook inbox) would wait on
                unsynced = 0;
                fdatasync(state.fd, () => pump());
                return;
              }
            }
            pump();
          });
        };
        put(0);
      };
      return {
        line(text) {
          if (state.closed || closing || failed) return;
          if (writing) {
            void this.lines([text]);
            return;
          }
          const bytes = Buffer.from(`${text}\n`);
          writeSync(state.fd, bytes);
          written([text], bytes);
        },
        lines(texts) {
          if (state.closed || closing || failed || texts.length === 0) return Promise.resolve();
          const bytes = Buffer.from(`${texts.join('\n')}\n`);
          queue.push({ texts, bytes });
          queuedBytes += bytes.length;
          const done = new Promise<void>((resolve) => drained.push(resolve));
          if (!writing) pump();
          return done;
        },
        get size() {
          return state.index.size + queuedBytes;
        },
        close() {
          if (state.closed || closing) return;
          closing = true;
          if (writing) return; // pump closes it once the queue is written
          closeSync(state.fd);
          finishClose();
        },
      };
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
      if (found === null) return null;
      // a copy of the numbers: a live writer may append while we read, and we answer as of now
      const { size, marks } = found.index;
      const total = totalLines(found.index);
      const count = Math.max(0, Math.min(MAX_COUNT, 'tail' in query ? query.tail : query.count));
      const start = 'tail' in query ? Math.max(1, total - count + 1) : Math.max(1, Math.floor(query.start));
      const answer: LogLines = { start, lines: [], total, startOffset: size, endOffset: size, size, complete: !found.live };
      if (start > total || count === 0) return answer;
      const k = Math.min(Math.floor((start - 1) / STRIDE), marks.length - 1);
      let line = k * STRIDE + 1;
      let pos = marks[k] ?? 0;
      let lineStart = pos;
      // the current line: its length, and the part of it that will be shown
      let parts: Buffer[] = [];
      let kept = 0;
      let length = 0;
      let bytes = 0;
      let full = false;
      const addPiece = (piece: Buffer): void => {
        length += piece.length;
        if (line >= start && kept < MAX_LINE_BYTES && piece.length > 0) {
          const shown = Buffer.from(piece.subarray(0, MAX_LINE_BYTES - kept));
          parts.push(shown);
          kept += shown.length;
        }
      };
      /** Ends the current line at `end` (the offset after its newline); true when the answer is full. */
      const endLine = (end: number): boolean => {
        if (line >= start) {
          if (answer.lines.length === 0) answer.startOffset = lineStart;
          const text = Buffer.concat(parts, kept).toString('utf8');
          answer.lines.push(toShownLine({ text, omitted: Math.max(0, length - MAX_LINE_BYTES) }));
          answer.endOffset = end;
          bytes += kept;
        }
        parts = [];
        kept = 0;
        length = 0;
        line += 1;
        lineStart = end;
        return answer.lines.length >= count || bytes >= MAX_ANSWER_BYTES;
      };
      const handle = await open(pathOf(buildId), 'r');
      try {
        const buffer = Buffer.alloc(CHUNK);
        while (pos < size && !full) {
          const { bytesRead } = await handle.read(buffer, 0, Math.min(CHUNK, size - pos), pos);
          if (bytesRead === 0) break;
          const view = buffer.subarray(0, bytesRead);
          let from = 0;
          for (let nl = view.indexOf(NEWLINE); nl !== -1; nl = view.indexOf(NEWLINE, from)) {
            addPiece(view.subarray(from, nl));
            from = nl + 1;
            if (endLine(pos + from)) {
              full = true;
              break;
            }
          }
          if (!full) addPiece(view.subarray(from));
          pos += bytesRead;
        }
        // a last line without a newline (a log some other writer left unfinished)
        if (!full && pos >= size && length > 0) endLine(size);
      } finally {
        await handle.close();
      }
      if (answer.lines.length === 0) answer.startOffset = answer.endOffset = size;
      return answer;
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
