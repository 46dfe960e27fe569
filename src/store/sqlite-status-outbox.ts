import { openStore, type StoreOptions } from './sqlite-writer.js';
import type { OutboxEntry, StatusOutbox } from './status-outbox.js';

export type { NewOutboxEntry, OutboxEntry, StatusOutbox } from './status-outbox.js';

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
const toEntry = (r: Row): OutboxEntry => ({
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
});

/**
 * Creates the outbox in the SQLite database at `path` (the build store's file is fine), or
 * `:memory:`. Writes go as the build store's do (see `createSqliteBuildStore`): with a file,
 * through a writer thread, kept in memory until committed, so reads see them at once and the
 * event loop never waits for the disk; an entry is on disk typically one fsync after
 * `enqueue` ({@link StatusOutbox.flush} resolves then), and a crash loses at most the
 * changes of those last milliseconds, the newest ones. Entry ids are given here (one more
 * than the highest ever used), so `enqueue` returns its id at once: one outbox per
 * database file at a time. With `:memory:` or `direct: true`, each change is committed
 * (`synchronous=FULL`) before it returns. `writer` is as the build store's (a shared handle).
 */
export function createSqliteStatusOutbox(options: StoreOptions): StatusOutbox {
  const { db, writer } = openStore(options);
  const due = db.prepare<[number, number], Row>('SELECT * FROM status_outbox WHERE next_attempt_at <= ? ORDER BY id LIMIT ?');
  const get = db.prepare<[number], Row>('SELECT * FROM status_outbox WHERE id = ?');
  const sameKey = db.prepare<[string, string, string, string], { id: number }>(
    'SELECT id FROM status_outbox WHERE owner = ? AND repo = ? AND sha = ? AND context = ?',
  );
  const next = db.prepare<[number], { id: number; at: number }>('SELECT id, next_attempt_at AS at FROM status_outbox ORDER BY next_attempt_at, id LIMIT ?');
  const size = db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM status_outbox');
  const highest = db.prepare<[], { id: number | null }>(
    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'status_outbox'), 0), COALESCE((SELECT MAX(id) FROM status_outbox), 0)) AS id",
  );
  let nextId = (highest.get()?.id ?? 0) + 1;

  /** entries as the uncommitted changes left them (null: removed), by id */
  const pending = new Map<number, { value: OutboxEntry | null; seq: number }>();
  writer.onSettled((seq) => {
    for (const [id, p] of pending) if (p.seq <= seq) pending.delete(id);
  });
  const find = (id: number): OutboxEntry | null => {
    const p = pending.get(id);
    if (p !== undefined) return p.value === null ? null : { ...p.value };
    const row = get.get(id);
    return row === undefined ? null : toEntry(row);
  };
  const write = (op: Parameters<typeof writer.write>[0], overlay: (seq: number) => void): void => {
    if (writer.direct !== null) writer.direct(op);
    else overlay(writer.write(op));
  };

  return {
    enqueue(entry, now) {
      const id = nextId++;
      // the older unsent ones of this key go with the same change
      const older = [...sameKey.all(entry.owner, entry.repo, entry.sha, entry.context).map((r) => r.id)];
      for (const [other, p] of pending) {
        const e = p.value;
        if (e !== null && e.owner === entry.owner && e.repo === entry.repo && e.sha === entry.sha && e.context === entry.context) older.push(other);
      }
      write({ kind: 'outbox.enqueue', id, entry: { ...entry }, now }, (seq) => {
        for (const other of older) pending.set(other, { value: null, seq });
        pending.set(id, { value: { ...entry, id, attempts: 0, nextAttemptAt: now }, seq });
      });
      return id;
    },
    due(now, limit) {
      const out = due
        .all(now, limit + pending.size)
        .filter((r) => !pending.has(r.id))
        .map(toEntry);
      for (const p of pending.values()) if (p.value !== null && p.value.nextAttemptAt <= now) out.push({ ...p.value });
      return out.sort((a, b) => a.id - b.id).slice(0, limit);
    },
    has: (id) => find(id) !== null,
    remove(id) {
      write({ kind: 'outbox.remove', id }, (seq) => pending.set(id, { value: null, seq }));
    },
    retryAt(id, nextAttemptAt, error) {
      const entry = find(id);
      write({ kind: 'outbox.retry', id, nextAttemptAt, error: error.slice(0, 500) }, (seq) => {
        if (entry !== null) pending.set(id, { value: { ...entry, attempts: entry.attempts + 1, nextAttemptAt }, seq });
      });
    },
    nextDueAt() {
      let at: number | null = null;
      for (const p of pending.values()) if (p.value !== null && (at === null || p.value.nextAttemptAt < at)) at = p.value.nextAttemptAt;
      // the earliest stored one not changed since: at most pending.size rows come before it
      const stored = next.all(pending.size + 1).find((r) => !pending.has(r.id));
      return stored !== undefined && (at === null || stored.at < at) ? stored.at : at;
    },
    size() {
      let n = size.get()?.n ?? 0;
      for (const [id, p] of pending) {
        const inDb = get.get(id) !== undefined;
        if (inDb && p.value === null) n--;
        if (!inDb && p.value !== null) n++;
      }
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
