import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import { openDatabase } from './open-database.js';
import { createWriteOps, type WriteOp, type WriteResult } from './sqlite-write-ops.js';

/**
 * The one writer of a database: every change the stores of one database file make goes
 * through it, in call order.
 *
 * On a thread (a file database), {@link SqliteWriter.write} only queues the change and
 * returns its sequence number; a thread of its own with its own connection commits the
 * queue in order, grouping whatever arrived while the previous commit's fsync ran into one
 * transaction (`synchronous=FULL`: one fsync for the group). The event loop never waits for
 * the disk nor for the write lock. The stores keep each change in memory until its commit is
 * reported, so their reads see it at once (see the stores' overlays).
 *
 * Several stores on the same file share one thread through handles ({@link SqliteWriter.share}):
 * sequence numbers are common to all of them, so their changes are committed in call order
 * across tables (a build's row before the status it posts), and one thread's memory is paid
 * once. `flush`, `onWriteError` and `close` are each handle's own: a handle hears only of
 * its own refused changes.
 *
 * Durability: a change is on disk once its group is committed, typically one fsync (a few
 * ms) after the call; {@link SqliteWriter.flush} resolves then. Commits keep call order, so
 * a crash (of the process or of the machine) loses at most the changes of the last few ms,
 * always a suffix: never a change without those made before it. {@link SqliteWriter.close}
 * commits everything queued before it returns.
 *
 * Direct (`:memory:`, or `direct: true`): each change is applied at once on the caller's
 * connection with `synchronous=FULL`, as before there was a thread (tests of callers, and
 * the benchmark's old path).
 *
 * A change the database refuses (a constraint, a trigger, a full disk) is not retried: it is
 * reported, once, to the first {@link SqliteWriter.flush} (or `close`) of its handle that
 * covers it, and to that handle's `onWriteError`; the stores then drop it from memory, so
 * reads show what is on disk.
 */
export interface SqliteWriter {
  /** Set when changes are applied at once: applies `op` on the caller's connection and returns its result; null on a thread. */
  readonly direct: ((op: WriteOp) => WriteResult) | null;
  /** Queues `op` (after every earlier one of every handle); returns its sequence number (1, 2, …). Throws once this handle is closed. */
  write(op: WriteOp): number;
  /** Calls `listener` with the highest sequence number settled (committed, or failed and reported) after each commit. */
  onSettled(listener: (seq: number) => void): void;
  /** Resolves once every change of this handle queued before the call is committed; rejects with its first refused one not yet reported. */
  flush(): Promise<void>;
  /**
   * Commits what is queued (by every handle), then closes this handle; the last handle
   * closed stops the thread. Blocks the caller until done (at most `closeTimeoutMs`, default
   * 30 s), as a store's `close` is synchronous. Throws this handle's first refused change not
   * yet reported, or when the thread does not finish in time.
   */
  close(): void;
  /**
   * Another handle on this writer (the same thread and sequence), for another store on the
   * same database file, with its own `onWriteError`. Throws once every handle is closed, and
   * for a direct writer (each direct store applies on its own connection).
   */
  share(options?: { onWriteError?: (err: Error) => void }): SqliteWriter;
}

/** A message of the writer thread. */
export type WriterReply = { ready: true } | { fatal: string } | { committed: number; failures: { seq: number; owner: number; message: string }[] };
/**
 * A message to the writer thread: changes (`owner` names the handle that made each, echoed
 * in failures), or a commit of everything sent that answers on `port` and sets `done` (the
 * caller blocks on it), after which the thread stops when `close`.
 */
export type WriterRequest = { ops: { seq: number; owner: number; op: WriteOp }[] } | { sync: true; close: boolean; port: MessagePort; done: SharedArrayBuffer };

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

/** A handle's own state: its listeners, refused changes not yet reported and flushes waiting. */
interface Handle {
  id: number;
  lastSeq: number;
  closed: boolean;
  listeners: ((seq: number) => void)[];
  failures: { seq: number; error: Error }[];
  waiters: { seq: number; resolve: () => void; reject: (err: Error) => void }[];
  onWriteError: ((err: Error) => void) | undefined;
}

/** Takes `handle`'s first refused change up to `upTo`, and drops the others up to it (their stores dropped them too). */
function takeFailure(handle: Handle, upTo: number): Error | null {
  const { failures } = handle;
  const at = failures.findIndex((f) => f.seq <= upTo);
  if (at < 0) return null;
  const [failure] = failures.splice(at, 1);
  for (let i = failures.length - 1; i >= 0; i--) if ((failures[i]?.seq ?? Infinity) <= upTo) failures.splice(i, 1);
  return failure?.error ?? null;
}

/**
 * Creates the writer of the database at `path` and returns its first handle (more with
 * {@link SqliteWriter.share}). `db` is the caller's own connection, used only when writes
 * are direct (`path` is `:memory:`, or `direct`), where it is required. The thread is
 * started at the first write and does not keep the process alive; writes queue until it
 * has opened the database. A thread that cannot open the database, or that dies, fails the
 * writes it was given (reported like refused ones); the next write starts a new thread.
 */
export function createSqliteWriter(options: {
  path: string;
  db?: Database.Database;
  direct?: boolean;
  onWriteError?: (err: Error) => void;
  closeTimeoutMs?: number;
}): SqliteWriter {
  const handles = new Map<number, Handle>();
  let nextHandle = 1;
  let lastSeq = 0;
  let settled = 0;

  const settle = (seq: number, failed: { seq: number; owner: number; message: string }[]): void => {
    for (const f of failed) {
      const owner = handles.get(f.owner);
      if (owner === undefined) continue;
      const error = new Error(f.message);
      owner.failures.push({ seq: f.seq, error });
      owner.onWriteError?.(error);
    }
    settled = Math.max(settled, seq);
    for (const handle of handles.values()) {
      for (const listener of handle.listeners) listener(settled);
      const { waiters } = handle;
      for (let i = 0; i < waiters.length;) {
        const waiter = waiters[i] as (typeof waiters)[number];
        if (waiter.seq > settled) {
          i++;
          continue;
        }
        waiters.splice(i, 1);
        const error = takeFailure(handle, waiter.seq);
        if (error === null) waiter.resolve();
        else waiter.reject(error);
      }
    }
  };

  if (options.direct === true || options.path === ':memory:') {
    if (options.db === undefined) throw new Error("a direct writer applies on the caller's connection: db is required");
    const ops = createWriteOps(options.db);
    let closed = false;
    const listeners: ((seq: number) => void)[] = [];
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
      share() {
        throw new Error('a direct writer is not shared');
      },
    };
  }

  let worker: Worker | null = null;
  let stopped = false;
  /** sent, not yet settled */
  let sentUpTo = 0;
  let outgoing: { seq: number; owner: number; op: WriteOp }[] = [];
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
      if (!stopped) failSent('the store writer thread stopped');
    });
    return started;
  };
  /** every write sent to a thread that is gone: failed, once for each handle that made one */
  function failSent(message: string): void {
    if (sentUpTo <= settled) return;
    const failed: { seq: number; owner: number; message: string }[] = [];
    for (const handle of handles.values()) if (handle.lastSeq > settled) failed.push({ seq: settled + 1, owner: handle.id, message });
    settle(sentUpTo, failed);
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
  /** Commits everything sent, blocking until the thread answers; stops the thread when `close`. */
  const commitNow = (close: boolean): void => {
    send();
    const running = worker;
    if (running === null) return;
    const done = new SharedArrayBuffer(4);
    const { port1, port2 } = new MessageChannel();
    running.postMessage({ sync: true, close, port: port2, done } satisfies WriterRequest, [port2]);
    const state = Atomics.wait(new Int32Array(done), 0, 0, options.closeTimeoutMs ?? 30_000);
    const reply = receiveMessageOnPort(port1)?.message as WriterReply | undefined;
    port1.close();
    if (close || reply === undefined) {
      stopped = true;
      void running.terminate();
      worker = null;
    }
    if (reply !== undefined && 'committed' in reply) settle(reply.committed, reply.failures);
    else failSent(state === 'timed-out' ? 'the store writer did not finish in time' : 'the store writer thread stopped');
    // a thread stopped for want of an answer is started again by the next write
    if (!close) stopped = false;
  };

  const open = (onWriteError: ((err: Error) => void) | undefined): SqliteWriter => {
    const handle: Handle = { id: nextHandle++, lastSeq: 0, closed: false, listeners: [], failures: [], waiters: [], onWriteError };
    handles.set(handle.id, handle);
    const writer: SqliteWriter = {
      direct: null,
      write(op) {
        if (handle.closed) throw new Error('the store is closed');
        lastSeq++;
        handle.lastSeq = lastSeq;
        outgoing.push({ seq: lastSeq, owner: handle.id, op });
        // one message per turn of the event loop carries every change made in it
        if (!sending) {
          sending = true;
          queueMicrotask(send);
        }
        return lastSeq;
      },
      onSettled: (listener) => void handle.listeners.push(listener),
      flush() {
        const seq = handle.lastSeq;
        if (seq <= settled) {
          const error = takeFailure(handle, seq);
          return error === null ? Promise.resolve() : Promise.reject(error);
        }
        return new Promise((resolve, reject) => handle.waiters.push({ seq, resolve, reject }));
      },
      close() {
        if (handle.closed) return;
        handle.closed = true;
        // this handle is still listed while its last changes settle, so it hears of their failures
        commitNow([...handles.values()].every((h) => h.closed));
        handles.delete(handle.id);
        const error = takeFailure(handle, handle.lastSeq);
        for (const waiter of handle.waiters.splice(0)) waiter.reject(error ?? new Error('the store is closed'));
        if (error !== null) throw error;
      },
      share(shareOptions) {
        if (handles.size === 0) throw new Error('the store is closed');
        return open(shareOptions?.onWriteError);
      },
    };
    return writer;
  };
  return open(options.onWriteError);
}

/** How a store of the database file opens (see {@link openStore}). */
export interface StoreOptions {
  path: string;
  /** writes applied and committed on the caller's thread (also for `:memory:`) */
  direct?: boolean;
  onWriteError?: (err: Error) => void;
  /** a handle of a writer on the same file, shared with the other stores (see {@link SqliteWriter.share}) */
  writer?: SqliteWriter;
}

/**
 * The connection and writer of one store: a read-only connection and a writer of its own
 * (or the shared handle given), or, with `direct` or `:memory:`, one writing connection
 * that the writer commits on directly.
 */
export function openStore(options: StoreOptions): { db: Database.Database; writer: SqliteWriter } {
  const direct = options.writer === undefined && (options.direct === true || options.path === ':memory:');
  const db = openDatabase(options.path, { role: direct ? 'writer' : 'reader' });
  const writer =
    options.writer ??
    createSqliteWriter({
      path: options.path,
      db,
      direct,
      ...(options.onWriteError === undefined ? {} : { onWriteError: options.onWriteError }),
    });
  return { db, writer };
}
