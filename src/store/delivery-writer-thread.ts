/**
 * The thread behind `createDeliveryWriter` (delivery-writer.ts): owns one connection to the database and
 * commits each batch it is sent in one transaction.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createSqliteBuildStore } from './sqlite-build-store.js';
import type { DeliveryWrite } from './build-store.js';

const port = parentPort;
if (port === null) throw new Error('delivery-writer-thread runs in a worker thread');
try {
  const store = createSqliteBuildStore({ path: (workerData as { path: string }).path });
  port.on('message', (m: { id: number; records: DeliveryWrite[]; processed: string[] }) => {
    try {
      port.postMessage({ id: m.id, stored: store.writeDeliveries(m.records, m.processed) });
    } catch (err) {
      port.postMessage({ id: m.id, error: err instanceof Error ? err.message : String(err) });
    }
  });
  port.postMessage({ ready: true });
} catch (err) {
  port.postMessage({ error: err instanceof Error ? err.message : String(err) });
}
