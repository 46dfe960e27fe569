import Database from 'better-sqlite3';
import type { Build } from '../builds/build.js';
import { AppError } from '../errors.js';
import type { BuildQuery, BuildStore, DeliveryRecord } from './build-store.js';

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

  const insert = db.prepare('INSERT INTO builds (id, repo, ref, state, queued_at, doc) VALUES (@id, @repo, @ref, @state, @queuedAt, @doc)');
  const update = db.prepare('UPDATE builds SET state = @state, doc = @doc WHERE id = @id');
  const get = db.prepare<[string], { doc: string }>('SELECT doc FROM builds WHERE id = ?');
  const insertDelivery = db.prepare('INSERT OR REPLACE INTO deliveries (id, event, received_at, outcome) VALUES (@id, @event, @receivedAt, @outcome)');
  const getDelivery = db.prepare<[string], { id: string; event: string; received_at: string; outcome: string }>('SELECT * FROM deliveries WHERE id = ?');

  return {
    insert(build) {
      insert.run({ id: build.id, repo: build.repo, ref: build.ref, state: build.state, queuedAt: build.queuedAt, doc: JSON.stringify(build) });
    },
    update(build) {
      const { changes } = update.run({ id: build.id, state: build.state, doc: JSON.stringify(build) });
      if (changes !== 1) throw new AppError('NOT_FOUND', `build ${build.id} is not stored`, { status: 404 });
    },
    get(id) {
      const row = get.get(id);
      return row === undefined ? null : (JSON.parse(row.doc) as Build);
    },
    list(query: BuildQuery = {}) {
      const where: string[] = [];
      const params: Record<string, string | number> = {};
      if (query.repo !== undefined) (where.push('repo = @repo'), (params['repo'] = query.repo));
      if (query.ref !== undefined) (where.push('ref = @ref'), (params['ref'] = query.ref));
      if (query.state !== undefined) (where.push('state = @state'), (params['state'] = query.state));
      params['limit'] = Math.min(Math.max(query.limit ?? 50, 1), 500);
      const sql = `SELECT doc FROM builds ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY queued_at DESC, id DESC LIMIT @limit`;
      return (db.prepare(sql).all(params) as { doc: string }[]).map((row) => JSON.parse(row.doc) as Build);
    },
    recordDelivery(d: DeliveryRecord) {
      insertDelivery.run(d);
    },
    getDelivery(id) {
      const row = getDelivery.get(id);
      return row === undefined ? null : { id: row.id, event: row.event, receivedAt: row.received_at, outcome: row.outcome };
    },
    close() {
      db.close();
    },
  };
}
