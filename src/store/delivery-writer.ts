import type { Worker } from 'node:worker_threads';
import type { DeliveryWrite } from './build-store.js';
import { startStoreThread } from './sqlite-writer.js';

/**
 * Writes webhook deliveries durably with group commit, off the event loop. Each call is
 * queued; while one transaction is being committed (its fsync under `synchronous=FULL`
 * takes milliseconds on real disks), the next calls collect and then commit together. The
 * event loop never waits for the disk, so webhooks keep being read and answered meanwhile.
 */
export interface DeliveryWriter {
  /**
   * Stores `records` and marks `processed` delivery ids processed. Resolves, per record,
   * whether it was stored (false: that delivery id was stored before, a redelivery), once
   * the transaction holding it is committed. Rejects when the database refuses the write.
   */
  write(records: readonly DeliveryWrite[], processed?: readonly string[]): Promise<boolean[]>;
  /** Commits what is queued, then stops the writer thread (if one was started). */
  close(): Promise<void>;
}

interface Pending {
  records: readonly DeliveryWrite[];
  processed: readonly string[];
  resolve(stored: boolean[]): void;
  reject(err: Error): void;
}

/** A message from the writer thread: the outcome of batch `id`. */
type Reply = { id: number; stored: boolean[] } | { id: number; error: string };

/** Starts the writer thread for the database at `path`; resolves once its connection is open. */
export async function startDeliveryWriterThread(path: string): Promise<Worker> {
  const worker = startStoreThread('delivery-writer-thread', { path });
  await new Promise<void>((ok, fail) => {
    worker.once('message', (m: { ready?: boolean; error?: string }) =>
      m.ready === true ? ok() : fail(new Error(m.error ?? 'the delivery writer did not start')),
    );
    worker.once('error', fail);
  });
  return worker;
}

/**
 * Creates the delivery writer of the SQLite database at `path`. Its thread, with its own
 * connection (WAL, `synchronous=FULL`; opened by `openDatabase`), is started by the first
 * write, so a server that is sent no webhook pays for no thread (about 12 MiB); writes
 * queue until it has opened the database. A thread that cannot open the database, or that
 * dies, fails the writes it was given (their webhooks answer 500, and GitHub can redeliver
 * them); the next write starts a new one.
 */
export function createDeliveryWriter(options: {
  path: string;
  onThreadExit?: (err: Error) => void;
  /** starts a thread (default {@link startDeliveryWriterThread}); tests wrap it to reach the thread */
  startThread?: (path: string) => Promise<Worker>;
}): DeliveryWriter {
  const startThread = options.startThread ?? startDeliveryWriterThread;
  let worker: Worker | null = null;
  let starting: Promise<void> | null = null;
  let queue: Pending[] = [];
  let inFlight: { id: number; batch: Pending[] } | null = null;
  let nextId = 1;
  let closed = false;
  let drained: (() => void) | null = null;

  const fail = (err: Error): void => {
    const batch = [...(inFlight?.batch ?? []), ...queue];
    inFlight = null;
    queue = [];
    for (const p of batch) p.reject(err);
    drained?.();
  };
  const onReply = (reply: Reply): void => {
    if (inFlight === null || reply.id !== inFlight.id) return;
    const { batch } = inFlight;
    inFlight = null;
    if ('error' in reply) {
      for (const p of batch) p.reject(new Error(reply.error));
    } else {
      let at = 0;
      for (const p of batch) {
        p.resolve(reply.stored.slice(at, at + p.records.length));
        at += p.records.length;
      }
    }
    send();
  };
  const start = (): Promise<void> =>
    (starting ??= startThread(options.path).then(
      (started) => {
        starting = null;
        worker = started;
        started.on('message', onReply);
        started.once('exit', () => {
          worker = null;
          if (closed) return;
          const err = new Error('the delivery writer thread stopped');
          options.onThreadExit?.(err);
          fail(err);
        });
        started.on('error', () => undefined); // followed by 'exit'
      },
      (err: unknown) => {
        starting = null;
        fail(err instanceof Error ? err : new Error(String(err)));
        throw err;
      },
    ));

  function send(): void {
    if (inFlight !== null || queue.length === 0) {
      if (inFlight === null && drained !== null) drained();
      return;
    }
    if (worker === null) {
      void start().then(send, () => undefined);
      return;
    }
    const batch = queue;
    queue = [];
    inFlight = { id: nextId++, batch };
    worker.postMessage({ id: inFlight.id, records: batch.flatMap((p) => p.records), processed: batch.flatMap((p) => p.processed) });
  }

  return {
    write(records, processed = []) {
      if (closed) return Promise.reject(new Error('the delivery writer is closed'));
      return new Promise((resolve, reject) => {
        queue.push({ records, processed, resolve, reject });
        send();
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      if (inFlight !== null || queue.length > 0) await new Promise<void>((ok) => (drained = ok));
      await (worker as Worker | null)?.terminate();
    },
  };
}
