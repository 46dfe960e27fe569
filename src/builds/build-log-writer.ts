import { EventEmitter } from 'node:events';
import { close as closeFile, closeSync, fdatasync, openSync, write, writeSync } from 'node:fs';
import { createLineIndex, indexBytes, type LineIndex } from './build-log-index.js';

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

/** One line appended to a live log, as `BuildLogs.onAppend` listeners hear of it. */
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

/** Where the writers of one build log store announce lines on disk (`append`) and closed logs (`close`, with the build id). */
export type BuildLogBus = EventEmitter<{ append: [LogAppend]; close: [string] }>;

/** Bytes of a batch-written log after which they are flushed to disk (fdatasync) before more are written. */
const SYNC_EVERY_BYTES = 4 * 1024 * 1024;

/** A log a writer of this process holds, as its followers and readers see it. */
export interface LiveLog {
  fd: number;
  /** true once the writer closed the file: followers end after what is in it */
  closed: boolean;
  /** the line index of what is on disk */
  index: LineIndex;
  /** emits `change` after every write and at the close */
  events: EventEmitter;
}

/**
 * Creates (or truncates) the log file of `buildId` at `path` and returns its writer and the
 * live state followers watch. Lines on disk are told on `bus` (`append`); at the close,
 * `onClosed` hears of the final index before followers and the bus hear of the close.
 * `onWriteError` hears of a write that failed (disk full): the later lines are dropped.
 */
export function openBuildLogWriter(options: {
  buildId: string;
  path: string;
  bus: BuildLogBus;
  onClosed: (index: LineIndex) => void;
  onWriteError?: ((buildId: string, err: Error) => void) | undefined;
}): { live: LiveLog; writer: BuildLogWriter } {
  const { buildId, path, bus, onClosed, onWriteError } = options;
  const state: LiveLog = { fd: openSync(path, 'w'), closed: false, index: createLineIndex(), events: new EventEmitter() };
  state.events.setMaxListeners(0);
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
    onClosed(state.index);
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
          onWriteError?.(buildId, err);
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
  const writer: BuildLogWriter = {
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
  return { live: state, writer };
}
