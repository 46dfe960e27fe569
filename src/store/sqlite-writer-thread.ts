/**
 * The thread behind `createSqliteWriter` (sqlite-writer.ts): owns one connection to the
 * database and commits the changes it is sent in order, each group that arrived while the
 * previous commit ran in one transaction.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openDatabase } from './open-database.js';
import { createWriteOps, type WriteOp } from './sqlite-write-ops.js';
import type { WriterReply, WriterRequest } from './sqlite-writer.js';

const port = parentPort;
if (port === null) throw new Error('sqlite-writer-thread runs in a worker thread');
const reply = (message: WriterReply): void => port.postMessage(message);
try {
  const db = openDatabase((workerData as { path: string }).path, { role: 'writer' });
  const ops = createWriteOps(db);
  let queue: { seq: number; owner: number; op: WriteOp }[] = [];
  let scheduled = false;
  let lastSettled = 0;

  const commitAll = db.transaction((batch: { seq: number; owner: number; op: WriteOp }[]) => {
    const failures: { seq: number; owner: number; message: string }[] = [];
    for (const { seq, owner, op } of batch) {
      try {
        ops.apply(op);
      } catch (err) {
        failures.push({ seq, owner, message: err instanceof Error ? err.message : String(err) });
      }
    }
    return failures;
  });
  /** Commits the queue; the answer names the last sequence number and the changes refused. */
  const commit = (): WriterReply | null => {
    scheduled = false;
    const batch = queue;
    queue = [];
    const last = batch.at(-1)?.seq;
    if (last === undefined) return null;
    lastSettled = last;
    try {
      return { committed: last, failures: commitAll.immediate(batch) };
    } catch (err) {
      // the transaction itself failed (disk full, I/O error): none of the group is stored
      const message = err instanceof Error ? err.message : String(err);
      return { committed: last, failures: batch.map(({ seq, owner }) => ({ seq, owner, message })) };
    }
  };
  port.on('message', (request: WriterRequest) => {
    if ('ops' in request) {
      queue.push(...request.ops);
      // messages that arrived during a commit are all delivered before this runs: one group
      if (!scheduled) {
        scheduled = true;
        setImmediate(() => {
          const answer = commit();
          if (answer !== null) reply(answer);
        });
      }
      return;
    }
    // a commit now, for a caller blocked until it is done (a store's synchronous close)
    const answer = commit() ?? { committed: lastSettled, failures: [] };
    if (request.close) db.close();
    request.port.postMessage(answer);
    request.port.close();
    const done = new Int32Array(request.done);
    Atomics.store(done, 0, 1);
    Atomics.notify(done, 0);
    if (request.close) port.close();
  });
  reply({ ready: true });
} catch (err) {
  reply({ fatal: err instanceof Error ? err.message : String(err) });
}
