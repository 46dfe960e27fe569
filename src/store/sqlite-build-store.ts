import Database from 'better-sqlite3';
import type { Build } from '../builds/build.js';
import type { BuildRequest } from '../builds/build-request.js';
import { AppError } from '../errors.js';
import { BUILD_PAGE_SIZE, type BuildQuery, type BuildStore, type DeliveryWrite } from './build-store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS builds (
  id TEXT PRIMARY KEY,
  repo TEXT NOT NULL,
  ref TEXT NOT NULL,
  state TEXT NOT NULL,
  queued_at TEXT NOT NULL,
  doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS builds_repo_ref ON builds (repo, ref, queued_at);
CREATE INDEX IF NOT EXISTS builds_state ON builds (state);
CREATE TABLE IF NOT EXISTS deliveries (
  id TEXT PRIMARY KEY,
  event TEXT NOT NULL,
  received_at TEXT NOT NULL,
  outcome TEXT NOT NULL
);
`;

/** Migrations by `PRAGMA user_version`: entry i brings the schema from version i to i + 1. */
const MIGRATIONS: readonly string[] = [
  `ALTER TABLE builds ADD COLUMN definition TEXT;
   ALTER TABLE builds ADD COLUMN cache_key TEXT;
   ALTER TABLE builds ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE builds ADD COLUMN request TEXT;
   CREATE INDEX IF NOT EXISTS builds_cache_key ON builds (cache_key, state);
   CREATE INDEX IF NOT EXISTS builds_definition ON builds (repo, definition, id);`,
  `ALTER TABLE deliveries ADD COLUMN request TEXT;
   ALTER TABLE deliveries ADD COLUMN processed_at TEXT;
   CREATE INDEX IF NOT EXISTS deliveries_unprocessed ON deliveries (processed_at, received_at);`,
];

/**
 * {@link BuildStore} over SQLite (better-sqlite3) in WAL mode with `synchronous=FULL`, so a
 * committed write survives a crash. `path` is a file, or `:memory:` for tests of callers.
 */
export function createSqliteBuildStore(options: { path: string }): BuildStore {
  const db = new Database(options.path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  db.exec(SCHEMA);
  const version = Number(db.pragma('user_version', { simple: true }));
  db.transaction(() => {
    for (let v = version; v < MIGRATIONS.length; v++) {
      db.exec(MIGRATIONS[v] ?? '');
      db.pragma(`user_version = ${v + 1}`);
    }
  })();

  const insert = db.prepare(
    `INSERT INTO builds (id, repo, ref, state, queued_at, doc, definition, cache_key, cached, request)
     VALUES (@id, @repo, @ref, @state, @queuedAt, @doc, @definition, @cacheKey, @cached, @request)`,
  );
  const update = db.prepare('UPDATE builds SET state = @state, doc = @doc, cache_key = @cacheKey, cached = @cached WHERE id = @id');
  const get = db.prepare<[string], { doc: string }>('SELECT doc FROM builds WHERE id = ?');
  const getRequest = db.prepare<[string], { request: string | null }>('SELECT request FROM builds WHERE id = ?');
  const bySuccessKey = db.prepare<[string], { doc: string }>(
    "SELECT doc FROM builds WHERE cache_key = ? AND state = 'success' AND cached = 0 ORDER BY id LIMIT 1",
  );
  // the sha is only in the document: builds_repo_ref narrows the rows to one ref first
  const byCommit = db.prepare<[string, string, string, string], { doc: string }>(
    "SELECT doc FROM builds WHERE repo = ? AND ref = ? AND definition = ? AND json_extract(doc, '$.sha') = ? ORDER BY id DESC",
  );
  const previous = db.prepare<[string, string, string], { doc: string }>(
    'SELECT doc FROM builds WHERE repo = ? AND definition = ? AND id < ? AND cache_key IS NOT NULL ORDER BY id DESC LIMIT 1',
  );
  const keys = db.prepare<[], { id: string; repo: string; ref: string; definition: string; state: string }>(
    'SELECT id, repo, ref, definition, state FROM builds ORDER BY id',
  );
  const remove = db.prepare<[string]>('DELETE FROM builds WHERE id = ?');
  const parse = (row: { doc: string } | undefined): Build | null => (row === undefined ? null : (JSON.parse(row.doc) as Build));
  // a delivery without a request needs no processing: it is born processed
  const insertDelivery = db.prepare(
    `INSERT INTO deliveries (id, event, received_at, outcome, request, processed_at)
     VALUES (@id, @event, @receivedAt, @outcome, @request, CASE WHEN @request IS NULL THEN @receivedAt END)
     ON CONFLICT (id) DO NOTHING`,
  );
  const markProcessed = db.prepare<[string, string]>('UPDATE deliveries SET processed_at = ? WHERE id = ?');
  const unprocessed = db.prepare<[], { id: string; request: string }>(
    'SELECT id, request FROM deliveries WHERE processed_at IS NULL AND request IS NOT NULL ORDER BY received_at, id',
  );
  const prune = db.prepare<[string]>('DELETE FROM deliveries WHERE received_at < ? AND processed_at IS NOT NULL');
  const getDelivery = db.prepare<[string], { id: string; event: string; received_at: string; outcome: string }>('SELECT * FROM deliveries WHERE id = ?');

  const insertOne = (build: Build, request: BuildRequest | undefined): void => {
    insert.run({
      id: build.id,
      repo: build.repo,
      ref: build.ref,
      state: build.state,
      queuedAt: build.queuedAt,
      doc: JSON.stringify(build),
      definition: build.definition,
      cacheKey: build.cacheKey,
      cached: build.cached ? 1 : 0,
      request: request === undefined ? null : JSON.stringify(request),
    });
  };
  const insertForRequest = db.transaction((builds: readonly Build[], request: BuildRequest) => {
    for (const build of builds) insertOne(build, request);
    if (request.deliveryId !== null) markProcessed.run(new Date().toISOString(), request.deliveryId);
  });

  const writeDeliveries = db.transaction((records: readonly DeliveryWrite[], processed: readonly string[]) => {
    const stored = records.map(
      ({ delivery, request }) => insertDelivery.run({ ...delivery, request: request === undefined ? null : JSON.stringify(request) }).changes === 1,
    );
    const at = new Date().toISOString();
    for (const id of processed) markProcessed.run(at, id);
    return stored;
  });

  return {
    insert: insertOne,
    insertForRequest: (builds, request) => insertForRequest(builds, request),
    update(build) {
      const { changes } = update.run({ id: build.id, state: build.state, doc: JSON.stringify(build), cacheKey: build.cacheKey, cached: build.cached ? 1 : 0 });
      if (changes !== 1) throw new AppError('NOT_FOUND', `build ${build.id} is not stored`, { status: 404 });
    },
    get: (id) => parse(get.get(id)),
    getRequest(id) {
      const row = getRequest.get(id);
      return row?.request == null ? null : (JSON.parse(row.request) as BuildRequest);
    },
    findSuccessByCacheKey: (cacheKey) => parse(bySuccessKey.get(cacheKey)),
    findByCommit: ({ repo, ref, sha, definition }) => byCommit.all(repo, ref, definition, sha).map((row) => JSON.parse(row.doc) as Build),
    findPrevious: (repo, definition, beforeId) => parse(previous.get(repo, definition, beforeId)),
    listKeys: () => keys.all(),
    referencedDigests() {
      const digests = new Set<string>();
      const rows = db
        .prepare<[], { digest: string }>("SELECT DISTINCT json_extract(a.value, '$.digest') AS digest FROM builds, json_each(builds.doc, '$.artifacts') AS a")
        .all();
      for (const row of rows) digests.add(row.digest);
      return digests;
    },
    delete(id) {
      remove.run(id);
    },
    list(query: BuildQuery = {}) {
      const where: string[] = [];
      const params: Record<string, string | number> = {};
      if (query.repo !== undefined) {
        where.push('repo = @repo');
        params['repo'] = query.repo;
      }
      if (query.ref !== undefined) {
        where.push('ref = @ref');
        params['ref'] = query.ref;
      }
      if (query.state !== undefined) {
        where.push('state = @state');
        params['state'] = query.state;
      }
      if (query.olderThan !== undefined) {
        where.push('(queued_at < @olderQueuedAt OR (queued_at = @olderQueuedAt AND id < @olderId))');
        params['olderQueuedAt'] = query.olderThan.queuedAt;
        params['olderId'] = query.olderThan.id;
      }
      params['limit'] = Math.min(Math.max(query.limit ?? 50, 1), BUILD_PAGE_SIZE);
      const sql = `SELECT doc FROM builds ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY queued_at DESC, id DESC LIMIT @limit`;
      return (db.prepare(sql).all(params) as { doc: string }[]).map((row) => JSON.parse(row.doc) as Build);
    },
    writeDeliveries: (records, processed) => writeDeliveries(records, processed),
    unprocessedDeliveries: () => unprocessed.all().map((row) => ({ id: row.id, request: JSON.parse(row.request) as BuildRequest })),
    pruneDeliveries: (before) => prune.run(before).changes,
    getDelivery(id) {
      const row = getDelivery.get(id);
      return row === undefined ? null : { id: row.id, event: row.event, receivedAt: row.received_at, outcome: row.outcome };
    },
    close() {
      db.close();
    },
  };
}
