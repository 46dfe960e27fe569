export type { BuildStore, BuildQuery, DeliveryRecord } from './build-store.js';
export { createSqliteBuildStore } from './sqlite-build-store.js';
export { createSqliteStatusOutbox, type StatusOutbox, type OutboxEntry, type NewOutboxEntry } from './sqlite-status-outbox.js';
export { createDeliveryWriter, type DeliveryWriter, type DeliveryWrite } from './delivery-writer.js';
