export type { BuildStore, BuildQuery, DeliveryRecord } from './build-store.js';
export { createSqliteBuildStore } from './sqlite-build-store.js';
