import type Database from 'better-sqlite3';
import type { Build, BuildState } from '../builds/build.js';
import type { BuildRequest } from '../builds/build-request.js';
import { AppError } from '../errors.js';
import { BUILD_PAGE_SIZE, type BuildQuery, type BuildStore, type DeliveryRecord } from './build-store.js';
import type { BuildRow } from './sqlite-write-ops.js';
import { openStore, type SqliteWriter, type StoreOptions } from './sqlite-writer.js';

/** A change not yet reported committed, with the sequence number of the write that made it. */
interface Pending<T> {
  value: T;
  seq: number;
}
/** A build as the not-yet-committed writes left it: null when deleted; `request` undefined when it is the stored one. */
type PendingBuild = { build: Build; request: string | null | undefined } | null;
/** A delivery stored by `writeDeliveries` and not yet committed. */
type PendingDelivery = { record: DeliveryRecord; request: string | null; processedAt: string | null };

const toRow = (build: Build): BuildRow => ({
  id: build.id,
  repo: build.repo,
  ref: build.ref,
  state: build.state,
  queuedAt: build.queuedAt,
  doc: JSON.stringify(build),
  definition: build.definition,
  cacheKey: build.cacheKey,
  cached: build.cached ? 1 : 0,
});
/** A stored build; one stored before a field existed gets that field's empty value. */
const parse = (doc: string): Build => ({ worker: null, ...(JSON.parse(doc) as Omit<Build, 'worker'> & { worker?: string | null }) });
const copy = (build: Build): Build => structuredClone(build);
/** newest first: `queuedAt`, then `id`, descending */
const newestFirst = (a: Build, b: Build): number => (a.queuedAt === b.queuedAt ? (a.id < b.id ? 1 : a.id > b.id ? -1 : 0) : a.queuedAt < b.queuedAt ? 1 : -1);
const byId = (a: { id: string }, b: { id: string }): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/**
 * {@link BuildStore} over SQLite (better-sqlite3, WAL). `path` is a file, or `:memory:` for
 * tests of callers.
 *
 * With a file, writes go through a writer thread ({@link createSqliteWriter}): a write
 * checks what it must (an `insert` of a stored id, an `update` of an unknown one throw at
 * once), is kept in memory and queued, and returns without waiting for the disk or the
 * write lock. Reads run on this thread's own read-only connection and lay the writes not
 * yet committed over what it reads, so every read sees every write made before it.
 * Durability: committed in call order, as one transaction per group, typically one fsync
 * (a few ms) after the call; {@link BuildStore.flush} resolves then and `close` waits for
 * it. A crash loses at most the writes of those last milliseconds, always the newest ones
 * (never a write without those made before it), which start-up recovery takes as it takes
 * a crash one write earlier: a delivery whose builds were lost lost its processed mark with
 * them (one transaction) and is handed on again (`Inbox.recover`); a build whose last
 * change was lost is found queued (resumed by `Coordinator.resume`) or running (ended
 * `error` by `Retention.recover`).
 *
 * With `:memory:` or `direct: true`, every write is applied and committed (`synchronous=FULL`)
 * on this thread before it returns, as before there was a writer thread.
 * `onWriteError` hears each write the database refused (besides `flush` and `close`).
 * `writer`, a handle of a writer on the same file (see {@link SqliteWriter.share}), replaces
 * a writer of its own: the stores of one file then share one thread and one commit order;
 * `close` closes the handle, and that handle's `onWriteError` is the one that hears.
 */
export function createSqliteBuildStore(options: StoreOptions): BuildStore {
  const { db, writer } = openStore(options);
  return createBuildStoreOver(db, writer);
}

/** The build store over `db` (reads) and `writer` (writes), with the overlay of uncommitted writes. */
function createBuildStoreOver(db: Database.Database, writer: SqliteWriter): BuildStore {
  const get = db.prepare<[string], { doc: string }>('SELECT doc FROM builds WHERE id = ?');
  const getRequest = db.prepare<[string], { request: string | null }>('SELECT request FROM builds WHERE id = ?');
  const bySuccessKey = db.prepare<[string, number], { doc: string }>(
    "SELECT doc FROM builds WHERE cache_key = ? AND state = 'success' AND cached = 0 ORDER BY id LIMIT ?",
  );
  // the sha is only in the document: builds_repo_ref_queued narrows the rows to one ref first
  const byCommit = db.prepare<[string, string, string, string], { doc: string }>(
    "SELECT doc FROM builds WHERE repo = ? AND ref = ? AND definition = ? AND json_extract(doc, '$.sha') = ? ORDER BY id DESC",
  );
  const bySha = db.prepare<[string, string, number], { doc: string }>(
    "SELECT doc FROM builds WHERE repo = ? AND json_extract(doc, '$.sha') = ? ORDER BY id DESC LIMIT ?",
  );
  const previous = db.prepare<[string, string, string, number], { doc: string }>(
    'SELECT doc FROM builds WHERE repo = ? AND definition = ? AND id < ? AND cache_key IS NOT NULL ORDER BY id DESC LIMIT ?',
  );
  const keys = db.prepare<[], { id: string; repo: string; ref: string; definition: string; state: string }>(
    'SELECT id, repo, ref, definition, state FROM builds ORDER BY id',
  );
  const countState = db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM builds WHERE state = ?');
  const statesOf = db.prepare<[string], { id: string; state: string }>('SELECT id, state FROM builds WHERE id IN (SELECT value FROM json_each(?))');
  const digests = db.prepare<[string], { digest: string }>(
    "SELECT DISTINCT json_extract(a.value, '$.digest') AS digest FROM builds, json_each(builds.doc, '$.artifacts') AS a WHERE builds.id NOT IN (SELECT value FROM json_each(?))",
  );
  const unprocessed = db.prepare<[], { id: string; request: string; receivedAt: string }>(
    'SELECT id, request, received_at AS receivedAt FROM deliveries WHERE processed_at IS NULL AND request IS NOT NULL ORDER BY received_at, id',
  );
  const getDelivery = db.prepare<[string], { id: string; event: string; received_at: string; outcome: string; processed_at: string | null }>(
    'SELECT id, event, received_at, outcome, processed_at FROM deliveries WHERE id = ?',
  );
  const countPrunable = db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM deliveries WHERE received_at < ? AND processed_at IS NOT NULL');
  const lists = new Map<string, Database.Statement<Record<string, string | number>, { doc: string }>>();

  const builds = new Map<string, Pending<PendingBuild>>();
  const deliveries = new Map<string, Pending<PendingDelivery>>();
  /** processed marks of deliveries, by delivery id: when */
  const marks = new Map<string, Pending<string>>();
  const prunes: Pending<string>[] = [];
  writer.onSettled((seq) => {
    for (const map of [builds, deliveries, marks] as Map<string, Pending<unknown>>[]) for (const [key, p] of map) if (p.seq <= seq) map.delete(key);
    for (let i = prunes.length - 1; i >= 0; i--) if ((prunes[i]?.seq ?? 0) <= seq) prunes.splice(i, 1);
  });
  /** the write: applied at once when direct, else queued and laid over reads until committed */
  const write = (op: Parameters<SqliteWriter['write']>[0], overlay: (seq: number) => void): void => {
    if (writer.direct !== null) {
      writer.direct(op);
      return;
    }
    overlay(writer.write(op));
  };

  const find = (id: string): Build | null => {
    const pending = builds.get(id);
    if (pending !== undefined) return pending.value === null ? null : pending.value.build;
    const row = get.get(id);
    return row === undefined ? null : parse(row.doc);
  };
  /** stored rows not shadowed by a pending write, parsed */
  const stored = (rows: { doc: string }[]): Build[] => {
    const out: Build[] = [];
    for (const row of rows) {
      const build = parse(row.doc);
      if (!builds.has(build.id)) out.push(build);
    }
    return out;
  };
  /** pending builds (not deleted) that match */
  const pendingWhere = (match: (b: Build) => boolean): Build[] => {
    const out: Build[] = [];
    for (const p of builds.values()) if (p.value !== null && match(p.value.build)) out.push(p.value.build);
    return out;
  };

  const insertAll = (list: readonly Build[], request: BuildRequest | undefined, processed: { deliveryId: string; at: string } | null): void => {
    if (!db.open) throw new Error('the store is closed');
    const ids = new Set<string>();
    for (const build of list) {
      if (ids.has(build.id) || find(build.id) !== null) throw new AppError('CONFLICT', `build ${build.id} is already stored`, { status: 409 });
      ids.add(build.id);
    }
    const requestJson = request === undefined ? null : JSON.stringify(request);
    const builtRows = list.map(toRow);
    write({ kind: 'builds.insert', rows: builtRows, request: requestJson, processed }, (seq) => {
      for (const build of list) builds.set(build.id, { value: { build: copy(build), request: requestJson }, seq });
      if (processed !== null) marks.set(processed.deliveryId, { value: processed.at, seq });
    });
  };

  const listSql = (query: BuildQuery, cursor: 'older' | 'idBelow' | null): string => {
    const where: string[] = [];
    if (query.repo !== undefined) where.push('repo = @repo');
    if (query.ref !== undefined) where.push('ref = @ref');
    if (query.state !== undefined) where.push('state = @state');
    // a row value: one range of the (…, queued_at, id) index, not an OR the planner scans
    if (cursor === 'older') where.push('(queued_at, id) < (@olderQueuedAt, @olderId)');
    if (cursor === 'idBelow') where.push('id < @olderId');
    const direction = query.order === 'oldest-first' ? 'ASC' : 'DESC';
    return `SELECT doc FROM builds ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY queued_at ${direction}, id ${direction} LIMIT @limit`;
  };

  return {
    insert(build, request) {
      insertAll([build], request, null);
    },
    insertForRequest(list, request) {
      insertAll(list, request, request.deliveryId === null ? null : { deliveryId: request.deliveryId, at: new Date().toISOString() });
    },
    update(build) {
      const before = builds.get(build.id);
      if (find(build.id) === null) throw new AppError('NOT_FOUND', `build ${build.id} is not stored`, { status: 404 });
      const { repo: _repo, ref: _ref, queuedAt: _queuedAt, definition: _definition, ...row } = toRow(build);
      write({ kind: 'builds.update', row }, (seq) => builds.set(build.id, { value: { build: copy(build), request: before?.value?.request }, seq }));
    },
    get(id) {
      const build = find(id);
      return build === null ? null : copy(build);
    },
    getRequest(id) {
      const pending = builds.get(id);
      if (pending !== undefined && (pending.value === null || pending.value.request !== undefined)) {
        return pending.value?.request == null ? null : (JSON.parse(pending.value.request) as BuildRequest);
      }
      const row = getRequest.get(id);
      return row?.request == null ? null : (JSON.parse(row.request) as BuildRequest);
    },
    findSuccessByCacheKey(cacheKey) {
      const candidates = [
        ...stored(bySuccessKey.all(cacheKey, 1 + builds.size)),
        ...pendingWhere((b) => b.cacheKey === cacheKey && b.state === 'success' && !b.cached),
      ].sort(byId);
      return candidates[0] === undefined ? null : copy(candidates[0]);
    },
    findByCommit({ repo, ref, sha, definition }) {
      return [
        ...stored(byCommit.all(repo, ref, definition, sha)),
        ...pendingWhere((b) => b.repo === repo && b.ref === ref && b.definition === definition && b.sha === sha).map(copy),
      ]
        .sort(byId)
        .reverse();
    },
    findBySha({ repo, sha, limit = 100 }) {
      const max = Math.min(Math.max(limit, 1), BUILD_PAGE_SIZE);
      return [...stored(bySha.all(repo, sha, max + builds.size)), ...pendingWhere((b) => b.repo === repo && b.sha === sha).map(copy)]
        .sort(byId)
        .reverse()
        .slice(0, max);
    },
    findPrevious(repo, definition, beforeId) {
      const candidates = [
        ...stored(previous.all(repo, definition, beforeId, 1 + builds.size)),
        ...pendingWhere((b) => b.repo === repo && b.definition === definition && b.id < beforeId && b.cacheKey !== null),
      ].sort(byId);
      const last = candidates.at(-1);
      return last === undefined ? null : copy(last);
    },
    listKeys() {
      const out = keys.all().filter((k) => !builds.has(k.id));
      for (const b of pendingWhere(() => true)) out.push({ id: b.id, repo: b.repo, ref: b.ref, definition: b.definition, state: b.state });
      return builds.size === 0 ? out : out.sort(byId);
    },
    referencedDigests() {
      const out = new Set<string>();
      for (const row of digests.all(JSON.stringify([...builds.keys()]))) out.add(row.digest);
      for (const b of pendingWhere(() => true)) for (const a of b.artifacts) out.add(a.digest);
      return out;
    },
    delete(id) {
      write({ kind: 'builds.delete', id }, (seq) => builds.set(id, { value: null, seq }));
    },
    list(query: BuildQuery = {}) {
      const limit = Math.min(Math.max(query.limit ?? 50, 1), BUILD_PAGE_SIZE);
      let older = query.olderThan;
      let idBelow: string | null = null;
      if (query.beforeId !== undefined) {
        const at = find(query.beforeId);
        if (at === null) idBelow = query.beforeId;
        else older = { queuedAt: at.queuedAt, id: at.id };
      }
      if (query.order === 'oldest-first' && (older !== undefined || idBelow !== null)) throw new Error('a cursor goes with newest-first order only');
      const cursor = idBelow !== null ? 'idBelow' : older !== undefined ? 'older' : null;
      const sql = listSql(query, cursor);
      let statement = lists.get(sql);
      if (statement === undefined) {
        statement = db.prepare<Record<string, string | number>, { doc: string }>(sql);
        lists.set(sql, statement);
      }
      const params: Record<string, string | number> = { limit: limit + builds.size };
      if (query.repo !== undefined) params['repo'] = query.repo;
      if (query.ref !== undefined) params['ref'] = query.ref;
      if (query.state !== undefined) params['state'] = query.state;
      if (older !== undefined) {
        params['olderQueuedAt'] = older.queuedAt;
        params['olderId'] = older.id;
      }
      if (idBelow !== null) params['olderId'] = idBelow;
      const rows = stored(statement.all(params));
      if (builds.size === 0) return rows;
      const olderThan = older;
      const pending = pendingWhere(
        (b) =>
          (query.repo === undefined || b.repo === query.repo) &&
          (query.ref === undefined || b.ref === query.ref) &&
          (query.state === undefined || b.state === query.state) &&
          (olderThan === undefined || newestFirst(b, { ...b, queuedAt: olderThan.queuedAt, id: olderThan.id }) > 0) &&
          (idBelow === null || b.id < idBelow),
      );
      const merged = [...rows, ...pending.map(copy)].sort(newestFirst);
      if (query.order === 'oldest-first') merged.reverse();
      return merged.slice(0, limit);
    },
    count(state: BuildState) {
      let n = countState.get(state)?.n ?? 0;
      if (builds.size === 0) return n;
      for (const row of statesOf.all(JSON.stringify([...builds.keys()]))) if (row.state === state) n--;
      return n + pendingWhere((b) => b.state === state).length;
    },
    writeDeliveries(records, processed) {
      if (writer.direct !== null)
        return writer.direct({ kind: 'deliveries.write', records: [...records], processed: [...processed], at: new Date().toISOString() }) as boolean[];
      const at = new Date().toISOString();
      const seen = new Set<string>();
      const stored = records.map(({ delivery }) => {
        const fresh = !seen.has(delivery.id) && !deliveries.has(delivery.id) && getDelivery.get(delivery.id) === undefined;
        seen.add(delivery.id);
        return fresh;
      });
      const seq = writer.write({ kind: 'deliveries.write', records: [...records], processed: [...processed], at });
      records.forEach(({ delivery, request }, i) => {
        if (stored[i] !== true) return;
        deliveries.set(delivery.id, {
          value: {
            record: { ...delivery },
            request: request === undefined ? null : JSON.stringify(request),
            processedAt: request === undefined ? delivery.receivedAt : null,
          },
          seq,
        });
      });
      for (const id of processed) marks.set(id, { value: at, seq });
      return stored;
    },
    getDelivery(id) {
      const pending = deliveries.get(id)?.value;
      const row = pending === undefined ? getDelivery.get(id) : undefined;
      const record: DeliveryRecord | null =
        pending !== undefined
          ? { ...pending.record }
          : row === undefined
            ? null
            : { id: row.id, event: row.event, receivedAt: row.received_at, outcome: row.outcome };
      if (record === null) return null;
      const processedAt = marks.get(id)?.value ?? pending?.processedAt ?? row?.processed_at ?? null;
      // a pending prune already took it
      if (processedAt !== null && prunes.some((p) => record.receivedAt < p.value)) return null;
      return record;
    },
    unprocessedDeliveries() {
      const out = unprocessed.all().filter((row) => !deliveries.has(row.id));
      for (const [id, p] of deliveries) {
        if (p.value.request !== null && p.value.processedAt === null) out.push({ id, request: p.value.request, receivedAt: p.value.record.receivedAt });
      }
      return out
        .filter((d) => !marks.has(d.id))
        .sort((a, b) => (a.receivedAt === b.receivedAt ? byId(a, b) : a.receivedAt < b.receivedAt ? -1 : 1))
        .map((d) => ({ id: d.id, request: JSON.parse(d.request) as BuildRequest }));
    },
    pruneDeliveries(before) {
      if (writer.direct !== null) return writer.direct({ kind: 'deliveries.prune', before }) as number;
      // counted now as the writer will find them: stored and processed, or marked processed meanwhile
      let n = countPrunable.get(before)?.n ?? 0;
      for (const id of marks.keys()) {
        const row = getDelivery.get(id);
        if (row !== undefined && row.processed_at === null && row.received_at < before) n++;
      }
      for (const [id, p] of deliveries) {
        // one committed but not yet reported is counted above
        if (p.value.record.receivedAt < before && (p.value.processedAt !== null || marks.has(id)) && getDelivery.get(id) === undefined) n++;
      }
      // nothing to prune: no write, so an idle server never starts the writer's thread for it
      if (n === 0) return 0;
      const seq = writer.write({ kind: 'deliveries.prune', before });
      prunes.push({ value: before, seq });
      return n;
    },
    flush: () => writer.flush(),
    close() {
      try {
        writer.close();
      } finally {
        db.close();
      }
    },
  };
}
