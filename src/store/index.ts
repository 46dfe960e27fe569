export type { BuildStore, BuildQuery, DeliveryRecord, DeliveryWrite } from './build-store.js';
export { listAll, BUILD_PAGE_SIZE } from './build-store.js';
export { createSqliteBuildStore } from './sqlite-build-store.js';
export { createSqliteStatusOutbox, type StatusOutbox, type OutboxEntry, type NewOutboxEntry } from './sqlite-status-outbox.js';
export { createDeliveryWriter, type DeliveryWriter } from './delivery-writer.js';
export { createSqliteCheckRunOutbox, type CheckRunOutbox, type CheckRunEntry } from './sqlite-check-run-outbox.js';
