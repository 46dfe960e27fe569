import type { Build, BuildState } from '../builds/build.js';

/** Filters of {@link BuildStore.list}; every field optional, `limit` defaults to 50 (max 500). */
export interface BuildQuery {
  repo?: string;
  ref?: string;
  state?: BuildState;
  limit?: number;
}

/** A webhook delivery as received, for dedupe and audit. */
export interface DeliveryRecord {
  id: string;
  event: string;
  receivedAt: string;
  /** what came of it: `accepted`, `ignored: <reason>` */
  outcome: string;
}

/**
 * Build history and deliveries. Contract: `insert` of an existing id throws; `update`
 * replaces the whole record and throws when the id is unknown; reads return copies, so
 * callers may not mutate what the store holds.
 */
export interface BuildStore {
  insert(build: Build): void;
  update(build: Build): void;
  get(id: string): Build | null;
  /** newest first */
  list(query?: BuildQuery): Build[];
  recordDelivery(delivery: DeliveryRecord): void;
  getDelivery(id: string): DeliveryRecord | null;
  close(): void;
}
