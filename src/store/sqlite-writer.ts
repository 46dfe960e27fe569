import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import { createWriteOps, type WriteOp, type WriteResult } from './sqlite-write-ops.js';

/**
 * The one writer of a database: every change a store makes goes through it, in call order.
 *
 * On a thread (a file database), {@link SqliteWriter.write} only queues the change and
 * returns its sequence number; a thread of its own with its own connection commits the
 * queue in order, grouping whatever arrived while the previous commit's fsync ran into one
 * transaction (`synchronous=FULL`: one fsync for the group). The event loop never waits for
 * the disk nor for the write lock. The stores keep each change in memory until its commit is
 * reported, so their reads see it at once (see the stores' overlays).
 *
 * Durability: a change is on disk once its group is committed, typically one fsync (a few
 * ms) after the call, longer while the disk is slow; {@link SqliteWriter.flush} resolves
 * then. Commits keep call order, so a crash (of the process or of the machine) loses at most
 * the changes of the last few ms, always a suffix: never a change without those made
 * before it. {@link SqliteWriter.close} commits everything queued before it returns.
 *
 * Direct (`:memory:`, or `direct: true`): each change is applied at once on the caller's
 * connection with `synchronous=FULL`, as before there was a thread (tests of callers, and
 * the benchmark's old path).
 *
 * A change the database refuses (a constraint, a trigger, a full disk) is not retried: it is
 * reported, once, to the first {@link SqliteWriter.flush} (or `close`) that covers it, and
 * to `onWriteError`; the stores then drop it from memory, so reads show what is on disk.
 */
export interface SqliteWriter {
  /** Set when changes are applied at once: applies `op` on the caller's connection and returns its result; null on a thread. */
  readonly direct: ((op: WriteOp) => WriteResult) | null;
  /** Queues `op` (after every earlier one); returns its sequence number (1, 2, …). Throws once closed. */
  write(op: WriteOp): number;
  /** Calls `listener` with the highest sequence number settled (committed, or failed and reported) after each commit. */
  onSettled(listener: (seq: number) => void): void;
  /** Resolves once every change queued before the call is committed; rejects with the first refused one not yet reported. */
  flush(): Promise<void>;
  /**
   * Commits what is queued, then stops the thread: blocks the caller until done (at most
   * `closeTimeoutMs`, default 30 s), as a store's `close` is synchronous. Throws the first
   * refused change not yet reported, or when the thread does not finish in time.
   */
  close(): void;
}

/** A message of the writer thread. */
export type WriterReply = { ready: true } | { fatal: string } | { committed: number; failures: { seq: number; message: string }[] };
/** A message to the writer thread. */
export type WriterRequest = { ops: { seq: number; op: WriteOp }[] } | { close: true; port: MessagePort; done: SharedArrayBuffer };

/**
 * Starts `module` (a sibling file of this one, named without extension) as a worker thread
 * with `workerData`: from source (tsx) it registers tsx in the thread first, built it loads
 * the .js file.
 */
export function startStoreThread(module: string, workerData: unknown): Worker {
  // the thread's file has this module's extension: .ts when run from source (tsx), .js when built
  const ext = extname(fileURLToPath(import.meta.url));
  const file = new URL(`./${module}${ext}`, import.meta.url);
  return ext === '.ts'
    ? new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(file.href)}); })`, { eval: true, workerData })
    : new Worker(file, { workerData });
}

/**
 * Creates the writer of the database at `path`. `db` is the caller's own connection, used
 * only when writes are direct (`path` is `:memory:`, or `direct`). The thread is started at
 * once and does not keep the process alive; writes queue until it has opened the database.
 * A thread that cannot open the database, or that dies, fails the writes it was given
 * (reported like refused ones); the next write starts a new thread.
 */
export function createSqliteWriter(options: {
  path: string;
  db: Database.Database;
  direct?: boolean;
  onWriteError?: (err: Error) => void;
  closeTimeoutMs?: number;
}): SqliteWriter {
  const listeners: ((seq: number) => void)[] = [];
  const failures: { seq: number; error: Error }[] = [];
  const waiters: { seq: number; resolve: () => void; reject: (err: Error) => void }[] = [];
  let lastSeq = 0;
  let settled = 0;
  let closed = false;

  const takeFailure = (upTo: number): Error | null => {
    const at = failures.findIndex((f) => f.seq <= upTo);
    if (at < 0) return null;
    const [failure] = failures.splice(at, 1);
    // the others up to the same point are reported with it (their stores dropped them too)
    for (let i = failures.length - 1; i >= 0; i--) if ((failures[i]?.seq ?? Infinity) <= upTo) failures.splice(i, 1);
    return failure?.error ?? null;
  };
  const settle = (seq: number, failed: { seq: number; message: string }[]): void => {
    for (const f of failed) {
      const error = new Error(f.message);
      failures.push({ seq: f.seq, error });
      options.onWriteError?.(error);
    }
    settled = Math.max(settled, seq);
    for (const listener of listeners) listener(settled);
    for (let i = 0; i < waiters.length;) {
      const waiter = waiters[i] as (typeof waiters)[number];
      if (waiter.seq > settled) {
        i++;
        continue;
      }
      waiters.splice(i, 1);
      const error = takeFailure(waiter.seq);
      if (error === null) waiter.resolve();
      else waiter.reject(error);
    }
  };

  if (options.direct === true || options.path === ':memory:') {
    const ops = createWriteOps(options.db);
    const apply = (op: WriteOp): WriteResult => {
      if (closed) throw new Error('the store is closed');
      lastSeq++;
      settled = lastSeq;
      return ops.apply(op);
    };
    return {
      direct: apply,
      write(op) {
        apply(op);
        return lastSeq;
      },
      onSettled: (listener) => void listeners.push(listener),
      flush: () => Promise.resolve(),
      close() {
        closed = true;
      },
    };
  }

  let worker: Worker | null = null;
  /** sent, not yet settled */
  let sentUpTo = 0;
  let outgoing: { seq: number; op: WriteOp }[] = [];
  let sending = false;

  const start = (): Worker => {
    const started = startStoreThread('sqlite-writer-thread', { path: options.path });
    started.unref();
    started.on('message', (reply: WriterReply) => {
      if ('committed' in reply) settle(reply.committed, reply.failures);
      else if ('fatal' in reply) failSent(`the store writer could not open the database: ${reply.fatal}`);
    });
    started.on('error', () => undefined); // followed by 'exit'
    started.once('exit', () => {
      if (worker === started) worker = null;
      if (!closed) failSent('the store writer thread stopped');
    });
    return started;
  };
  /** every write sent to a thread that is gone: failed */
  function failSent(message: string): void {
    const failed: { seq: number; message: string }[] = [];
    for (let seq = settled + 1; seq <= sentUpTo; seq++) failed.push({ seq, message });
    if (failed.length > 0) settle(sentUpTo, failed);
  }
  const send = (): void => {
    sending = false;
    if (outgoing.length === 0) return;
    worker ??= start();
    const ops = outgoing;
    outgoing = [];
    sentUpTo = ops.at(-1)?.seq ?? sentUpTo;
    worker.postMessage({ ops } satisfies WriterRequest);
  };

  return {
    direct: null,
    write(op) {
      if (closed) throw new Error('the store is closed');
      lastSeq++;
      outgoing.push({ seq: lastSeq, op });
      // one message per turn of the event loop carries every change made in it
      if (!sending) {
        sending = true;
        queueMicrotask(send);
      }
      return lastSeq;
    },
    onSettled: (listener) => void listeners.push(listener),
    flush() {
      const seq = lastSeq;
      if (seq <= settled) {
        const error = takeFailure(seq);
        return error === null ? Promise.resolve() : Promise.reject(error);
      }
      return new Promise((resolve, reject) => waiters.push({ seq, resolve, reject }));
    },
    close() {
      if (closed) return;
      closed = true;
      send();
      const running = worker;
      if (running === null) return;
      const done = new SharedArrayBuffer(4);
      const { port1, port2 } = new MessageChannel();
      running.postMessage({ close: true, port: port2, done } satisfies WriterRequest, [port2]);
      const state = Atomics.wait(new Int32Array(done), 0, 0, options.closeTimeoutMs ?? 30_000);
      const reply = receiveMessageOnPort(port1)?.message as WriterReply | undefined;
      port1.close();
      void running.terminate();
      worker = null;
      if (reply !== undefined && 'committed' in reply) settle(reply.committed, reply.failures);
      else failSent(state === 'timed-out' ? 'the store writer did not finish in time' : 'the store writer thread stopped');
      const error = takeFailure(lastSeq);
      for (const waiter of waiters.splice(0)) waiter.reject(error ?? new Error('the store is closed'));
      if (error !== null) throw error;
    },
  };
}
