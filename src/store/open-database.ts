import Database from 'better-sqlite3';

/** Tables every connection may find; each statement is idempotent (`IF NOT EXISTS`). */
const BASE_SCHEMA = `
CREATE TABLE IF NOT EXISTS builds (
  id TEXT PRIMARY KEY,
  repo TEXT NOT NULL,
  ref TEXT NOT NULL,
  state TEXT NOT NULL,
  queued_at TEXT NOT NULL,
  doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
  id TEXT PRIMARY KEY,
  event TEXT NOT NULL,
  received_at TEXT NOT NULL,
  outcome TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS status_outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  build_id TEXT NOT NULL,
  owner TEXT NOT NULL,
  repo TEXT NOT NULL,
  sha TEXT NOT NULL,
  context TEXT NOT NULL,
  state TEXT NOT NULL,
  target_url TEXT NOT NULL,
  description TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  last_error TEXT
);
CREATE INDEX IF NOT EXISTS status_outbox_due ON status_outbox (next_attempt_at, id);
CREATE INDEX IF NOT EXISTS status_outbox_key ON status_outbox (owner, repo, sha, context);
CREATE TABLE IF NOT EXISTS dead_refs (
  repo TEXT NOT NULL,
  ref TEXT NOT NULL,
  dead_at TEXT NOT NULL,
  PRIMARY KEY (repo, ref)
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
  // history pages, the monitor and /metrics read builds newest first, by state, repository
  // or ref: each of those orders is an index, so a page is a range of it, never a sort
  `CREATE INDEX IF NOT EXISTS builds_queued ON builds (queued_at, id);
   CREATE INDEX IF NOT EXISTS builds_state_queued ON builds (state, queued_at, id);
   CREATE INDEX IF NOT EXISTS builds_repo_queued ON builds (repo, queued_at, id);
   CREATE INDEX IF NOT EXISTS builds_repo_ref_queued ON builds (repo, ref, queued_at, id);
   DROP INDEX IF EXISTS builds_repo_ref;
   DROP INDEX IF EXISTS builds_state;`,
  // check runs on their way to GitHub (sqlite-check-run-outbox.ts): the whole entry as JSON
  `CREATE TABLE IF NOT EXISTS check_run_outbox (
     key TEXT PRIMARY KEY,
     next_attempt_at INTEGER NOT NULL,
     doc TEXT NOT NULL
   );
   CREATE INDEX IF NOT EXISTS check_run_outbox_due ON check_run_outbox (next_attempt_at, key);`,
  // a re-run check suite names a commit: its builds in one repository (the sha is in the document only)
  `CREATE INDEX IF NOT EXISTS builds_repo_sha ON builds (repo, json_extract(doc, '$.sha'), id);`,
];

/** The schema version {@link openDatabase} brings a database to. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Opens the autobuilder database at `path` (a file, or `:memory:`): WAL, `synchronous=FULL`
 * (a committed transaction survives a crash and a power loss), `busy_timeout` 5 s, and the
 * schema of every table (builds, deliveries, status outbox, check run outbox, dead refs) brought up to date.
 * The one place where connections are set up: the stores on the main thread, the writer
 * thread and the delivery writer thread all open theirs here.
 *
 * `role: 'reader'` is the main thread's connection: it never writes once the schema is
 * current (then it is `query_only`, so a write by mistake throws at once instead of taking
 * the write lock), and a reader in WAL mode never waits for the write lock, so its busy
 * timeout never makes the event loop sleep behind a writer. Only when the schema is not yet
 * current (the first start of a new version) does the reader write it, once.
 * Throws a SqliteError when the file cannot be opened or the schema cannot be written.
 */
export function openDatabase(path: string, options: { role?: 'reader' | 'writer' } = {}): Database.Database {
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 5000');
    const version = Number(db.pragma('user_version', { simple: true }));
    if (version < SCHEMA_VERSION) {
      db.transaction(() => {
        db.exec(BASE_SCHEMA);
        // another connection may have migrated meanwhile: read the version inside the transaction
        const current = Number(db.pragma('user_version', { simple: true }));
        for (let v = current; v < SCHEMA_VERSION; v++) {
          db.exec(MIGRATIONS[v] ?? '');
          db.pragma(`user_version = ${v + 1}`);
        }
      }).immediate();
    }
    if (options.role === 'reader') db.pragma('query_only = ON');
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}
