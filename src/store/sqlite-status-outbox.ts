import Database from 'better-sqlite3';

/** A commit status waiting to be posted. `nextAttemptAt` is ms since the epoch. */
export interface OutboxEntry {
  id: number;
  buildId: string;
  owner: string;
  repo: string;
  sha: string;
  context: string;
  state: 'pending' | 'success' | 'failure' | 'error';
  targetUrl: string;
  description: string;
  attempts: number;
  nextAttemptAt: number;
}

/** What {@link StatusOutbox.enqueue} takes: an entry without its bookkeeping. */
export type NewOutboxEntry = Omit<OutboxEntry, 'id' | 'attempts' | 'nextAttemptAt'>;

/**
 * The durable outbox of commit statuses. Contract: an entry is on disk (WAL,
 * `synchronous=FULL`) when `enqueue` returns; only the newest unsent entry per repository +
 * sha + context is kept (GitHub shows the latest status of a context, so an older one never
 * needs posting, and must never be posted after a newer one); entries leave only by
 * `remove` (sent, or refused for good).
 */
export interface StatusOutbox {
  /** Stores an entry, dropping older unsent ones of the same repository, sha and context; returns its id. */
  enqueue(entry: NewOutboxEntry, now: number): number;
  /** Entries due at `now`, oldest first. */
  due(now: number, limit: number): OutboxEntry[];
  /** Whether entry `id` is still waiting (not superseded or removed). */
  has(id: number): boolean;
  remove(id: number): void;
  /** Records a failed attempt and when to try again. */
  retryAt(id: number, nextAttemptAt: number, error: string): void;
  /** When the earliest waiting entry is due, or null when none waits. */
  nextDueAt(): number | null;
  /** Number of waiting entries. */
  size(): number;
  close(): void;
}

/** Creates the outbox in the SQLite database at `path` (the build store's file is fine). */
export function createSqliteStatusOutbox(options: { path: string }): StatusOutbox {
  const db = new Database(options.path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  db.exec(`
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
  `);
  const dropOlder = db.prepare('DELETE FROM status_outbox WHERE owner = @owner AND repo = @repo AND sha = @sha AND context = @context');
  const insert = db.prepare(
    `INSERT INTO status_outbox (build_id, owner, repo, sha, context, state, target_url, description, next_attempt_at)
     VALUES (@buildId, @owner, @repo, @sha, @context, @state, @targetUrl, @description, @now)`,
  );
  const enqueue = db.transaction((entry: NewOutboxEntry, now: number) => {
    dropOlder.run(entry);
    return Number(insert.run({ ...entry, now }).lastInsertRowid);
  });
  type Row = {
    id: number;
    build_id: string;
    owner: string;
    repo: string;
    sha: string;
    context: string;
    state: OutboxEntry['state'];
    target_url: string;
    description: string;
    attempts: number;
    next_attempt_at: number;
  };
  const due = db.prepare<[number, number], Row>('SELECT * FROM status_outbox WHERE next_attempt_at <= ? ORDER BY id LIMIT ?');
  const has = db.prepare<[number], { id: number }>('SELECT id FROM status_outbox WHERE id = ?');
  const remove = db.prepare<[number]>('DELETE FROM status_outbox WHERE id = ?');
  const retry = db.prepare<[number, string, number]>('UPDATE status_outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?');
  const next = db.prepare<[], { at: number | null }>('SELECT MIN(next_attempt_at) AS at FROM status_outbox');
  const size = db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM status_outbox');
  return {
    enqueue: (entry, now) => enqueue(entry, now),
    due: (now, limit) =>
      due.all(now, limit).map((r) => ({
        id: r.id,
        buildId: r.build_id,
        owner: r.owner,
        repo: r.repo,
        sha: r.sha,
        context: r.context,
        state: r.state,
        targetUrl: r.target_url,
        description: r.description,
        attempts: r.attempts,
        nextAttemptAt: r.next_attempt_at,
      })),
    has: (id) => has.get(id) !== undefined,
    remove(id) {
      remove.run(id);
    },
    retryAt(id, nextAttemptAt, error) {
      retry.run(nextAttemptAt, error.slice(0, 500), id);
    },
    nextDueAt: () => next.get()?.at ?? null,
    size: () => size.get()?.n ?? 0,
    close() {
      db.close();
    },
  };
}
