/**
 * The thread behind `createDeliveryWriter` (delivery-writer.ts): owns one connection to the database and
 * commits each batch it is sent in one transaction.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openDatabase } from './open-database.js';
import { createWriteOps } from './sqlite-write-ops.js';
import type { DeliveryWrite } from './build-store.js';

const port = parentPort;
if (port === null) throw new Error('delivery-writer-thread runs in a worker thread');
try {
  const ops = createWriteOps(openDatabase((workerData as { path: string }).path, { role: 'writer' }));
  port.on('message', (m: { id: number; records: DeliveryWrite[]; processed: string[] }) => {
    try {
      const stored = ops.apply({ kind: 'deliveries.write', records: m.records, processed: m.processed, at: new Date().toISOString() });
      port.postMessage({ id: m.id, stored });
    } catch (err) {
      port.postMessage({ id: m.id, error: err instanceof Error ? err.message : String(err) });
    }
  });
  port.postMessage({ ready: true });
} catch (err) {
  port.postMessage({ error: err instanceof Error ? err.message : String(err) });
}
