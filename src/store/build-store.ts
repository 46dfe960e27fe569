import type { Build, BuildState } from '../builds/build.js';
import type { BuildRequest } from '../builds/build-request.js';

/**
 * Filters of {@link BuildStore.list}; every field optional, `limit` defaults to 50 (max 500).
 * Builds come newest first (`queuedAt`, then `id`, descending), or oldest first with
 * `order: 'oldest-first'`; the cursors (`olderThan`, `beforeId`) go with newest first only.
 */
export interface BuildQuery {
  repo?: string;
  ref?: string;
  state?: BuildState;
  limit?: number;
  /** a cursor: only builds listed after this one (older: `queuedAt`, then `id`, descending) */
  olderThan?: Pick<Build, 'queuedAt' | 'id'>;
  /**
   * a page cursor by id: only builds listed after build `beforeId` (as `olderThan` with its
   * `queuedAt`); when that build is gone, the builds whose id sorts before it (ids sort by
   * creation time)
   */
  beforeId?: string;
  /** `newest-first` (the default) or `oldest-first` */
  order?: 'newest-first' | 'oldest-first';
}

/** Most builds one {@link BuildStore.list} call returns. */
export const BUILD_PAGE_SIZE = 500;

/**
 * Every build matching `query`, newest first, read page by page through the `olderThan`
 * cursor, so no limit of one call cuts the list short (start-up recovery, cancelling a pull
 * request's builds). A build whose state changes between pages is seen at most once.
 */
export function listAll(store: Pick<BuildStore, 'list'>, query: Omit<BuildQuery, 'limit' | 'olderThan'> = {}): Build[] {
  const all: Build[] = [];
  for (let page = store.list({ ...query, limit: BUILD_PAGE_SIZE }); page.length > 0;) {
    all.push(...page);
    if (page.length < BUILD_PAGE_SIZE) break;
    const last = page[page.length - 1] as Build;
    page = store.list({ ...query, limit: BUILD_PAGE_SIZE, olderThan: { queuedAt: last.queuedAt, id: last.id } });
  }
  return all;
}

/** A webhook delivery as received, for dedupe and audit. */
export interface DeliveryRecord {
  id: string;
  event: string;
  receivedAt: string;
  /** what came of it: `accepted`, `ignored: <reason>` */
  outcome: string;
}

/** One delivery to store, with the build request it carries when it asks for one. */
export interface DeliveryWrite {
  delivery: DeliveryRecord;
  request?: BuildRequest | undefined;
}

/**
 * Build history and deliveries. Contract: `insert` of an existing id throws; `update`
 * replaces the whole record and throws when the id is unknown; reads return copies, so
 * callers may not mutate what the store holds. Every read sees every write made before it
 * (how soon a write is on disk is the driver's to say: see `createSqliteBuildStore`).
 * Reads serve pages and counts from indexes: none reads the whole table but `listKeys` and
 * `referencedDigests` (retention).
 */
export interface BuildStore {
  /** Stores a new build; `request` is what asked for it (kept for rebuilds, never shown). */
  insert(build: Build, request?: BuildRequest): void;
  /**
   * Stores the builds one request asked for and, when the request came from a delivery
   * (`request.deliveryId`), marks that delivery processed, all in one transaction: after a
   * crash a delivery has either all its builds or none and is handed on again only then.
   */
  insertForRequest(builds: readonly Build[], request: BuildRequest): void;
  update(build: Build): void;
  get(id: string): Build | null;
  /** The request a build was made for, or null. */
  getRequest(id: string): BuildRequest | null;
  /** The earliest successful build that ran (was not itself cached) with this cache key. */
  findSuccessByCacheKey(cacheKey: string): Build | null;
  /** Every build of `repo` + `ref` + `sha` + `definition`, newest first (one build per tag and commit). */
  findByCommit(query: { repo: string; ref: string; sha: string; definition: string }): Build[];
  /** Every build of `repo` at commit `sha`, whatever its ref, newest first (a re-run check suite), at most `limit` (default 100, max 500). */
  findBySha(query: { repo: string; sha: string; limit?: number }): Build[];
  /** The newest build of `repo` + `definition` older than `beforeId` that has cache inputs. */
  findPrevious(repo: string, definition: string, beforeId: string): Build | null;
  /** Every build id with its repo, ref, definition and state, oldest first (retention). */
  listKeys(): { id: string; repo: string; ref: string; definition: string; state: string }[];
  /** Every artifact digest any stored build references (garbage collection). */
  referencedDigests(): Set<string>;
  /** Deletes a build record (retention). */
  delete(id: string): void;
  /** newest first (see {@link BuildQuery}) */
  list(query?: BuildQuery): Build[];
  /** How many builds are in `state` now (read from an index: cheap for the few queued or running ones). */
  count(state: BuildState): number;
  /**
   * Stores deliveries (durably, before their webhooks are answered), each with the build
   * request it carries when it asks for one, and marks the `processed` delivery ids
   * processed, all in one transaction (one fsync: the group commit of the delivery writer).
   * Returns, per record, whether it was stored: false, storing nothing, when a delivery of
   * that id is already stored (a redelivery).
   */
  writeDeliveries(records: readonly DeliveryWrite[], processed: readonly string[]): boolean[];
  getDelivery(id: string): DeliveryRecord | null;
  /** Deliveries whose request was never handed on (a crash between the answer and the work), oldest first. */
  unprocessedDeliveries(): { id: string; request: BuildRequest }[];
  /** Forgets deliveries received before `before` (ISO 8601); returns how many. */
  pruneDeliveries(before: string): number;
  /** Resolves once every write made before the call is on disk; rejects with the error of one the database refused (each refusal is reported once). */
  flush(): Promise<void>;
  /** Puts every write on disk, then closes; throws the error of a write the database refused that no `flush` reported. */
  close(): void;
}
