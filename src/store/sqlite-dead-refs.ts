import Database from 'better-sqlite3';

/** A branch, tag or pull request ref that GitHub said is gone. `deadAt`: ISO 8601. */
export interface DeadRef {
  /** `owner/name` */
  repo: string;
  /** full ref as builds carry it: `refs/heads/x`, `refs/tags/v1`, `refs/pull/7/head` */
  ref: string;
  deadAt: string;
}

/**
 * Refs that were deleted (a push with `deleted: true`) or closed (a pull request), so that
 * retention can drop their lineage heads and mirror refs once they have been gone a while.
 * Contract: `mark` is idempotent and keeps the first time a ref was marked (a redelivery
 * does not push the deadline back); a mark stays until `forget`, which retention calls once
 * it has cleaned the ref up or seen it built again.
 */
export interface DeadRefs {
  mark(ref: DeadRef): void;
  /** Every mark, oldest first. */
  list(): DeadRef[];
  forget(repo: string, ref: string): void;
  close(): void;
}

/** Creates the dead-ref marks in the SQLite database at `path` (the build store's file; an additive table). */
export function createSqliteDeadRefs(options: { path: string }): DeadRefs {
  const db = new Database(options.path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  db.exec(`
    CREATE TABLE IF NOT EXISTS dead_refs (
      repo TEXT NOT NULL,
      ref TEXT NOT NULL,
      dead_at TEXT NOT NULL,
      PRIMARY KEY (repo, ref)
    );
  `);
  const insert = db.prepare('INSERT INTO dead_refs (repo, ref, dead_at) VALUES (@repo, @ref, @deadAt) ON CONFLICT (repo, ref) DO NOTHING');
  const all = db.prepare<[], { repo: string; ref: string; dead_at: string }>('SELECT repo, ref, dead_at FROM dead_refs ORDER BY dead_at, repo, ref');
  const remove = db.prepare('DELETE FROM dead_refs WHERE repo = ? AND ref = ?');
  return {
    mark(ref) {
      insert.run(ref);
    },
    list: () => all.all().map((r) => ({ repo: r.repo, ref: r.ref, deadAt: r.dead_at })),
    forget(repo, ref) {
      remove.run(repo, ref);
    },
    close: () => db.close(),
  };
}
