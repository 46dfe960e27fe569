import type { CheckRunEntry, CheckRunOutbox } from './check-run-outbox.js';
import { openStore, type StoreOptions } from './sqlite-writer.js';

export type { CheckRunEntry, CheckRunOutbox, CheckRunState, CheckRunConclusion, CheckRunStatus, StoredAnnotation } from './check-run-outbox.js';

type Row = { key: string; next_attempt_at: number; doc: string };

/**
 * Creates the check run outbox in the SQLite database at `path` (the build store's file is
 * fine), or `:memory:`. Writes go as the status outbox's do (see `createSqliteStatusOutbox`):
 * with a file, through the writer thread (a shared handle in `writer`), kept in memory until
 * committed, so reads see them at once and the event loop never waits for the disk; an
 * entry is on disk typically one fsync after `put` ({@link CheckRunOutbox.flush} resolves
 * then). With `:memory:` or `direct: true`, each change is committed before it returns.
 * An entry is one row: its key, when it is due, and the whole entry as JSON.
 */
export function createSqliteCheckRunOutbox(options: StoreOptions): CheckRunOutbox {
  const { db, writer } = openStore(options);
  const get = db.prepare<[string], Row>('SELECT * FROM check_run_outbox WHERE key = ?');
  const due = db.prepare<[number, number], Row>('SELECT * FROM check_run_outbox WHERE next_attempt_at <= ? ORDER BY next_attempt_at, key LIMIT ?');
  const next = db.prepare<[number], { key: string; at: number }>(
    'SELECT key, next_attempt_at AS at FROM check_run_outbox ORDER BY next_attempt_at, key LIMIT ?',
  );
  const size = db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM check_run_outbox');
  const toEntry = (row: Row): CheckRunEntry => JSON.parse(row.doc) as CheckRunEntry;

  /** entries as the uncommitted changes left them (null: removed), by key */
  const pending = new Map<string, { value: CheckRunEntry | null; seq: number }>();
  writer.onSettled((seq) => {
    for (const [key, p] of pending) if (p.seq <= seq) pending.delete(key);
  });
  const write = (op: Parameters<typeof writer.write>[0], overlay: (seq: number) => void): void => {
    if (writer.direct !== null) writer.direct(op);
    else overlay(writer.write(op));
  };
  const byDue = (a: CheckRunEntry, b: CheckRunEntry) => a.nextAttemptAt - b.nextAttemptAt || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

  return {
    put(entry) {
      const copy = structuredClone(entry);
      write({ kind: 'checks.put', key: entry.key, nextAttemptAt: entry.nextAttemptAt, doc: JSON.stringify(copy) }, (seq) =>
        pending.set(entry.key, { value: copy, seq }),
      );
    },
    get(key) {
      const p = pending.get(key);
      if (p !== undefined) return p.value === null ? null : structuredClone(p.value);
      const row = get.get(key);
      return row === undefined ? null : toEntry(row);
    },
    remove(key) {
      write({ kind: 'checks.remove', key }, (seq) => pending.set(key, { value: null, seq }));
    },
    due(now, limit) {
      const out = due
        .all(now, limit + pending.size)
        .filter((r) => !pending.has(r.key))
        .map(toEntry);
      for (const p of pending.values()) if (p.value !== null && p.value.nextAttemptAt <= now) out.push(structuredClone(p.value));
      return out.sort(byDue).slice(0, limit);
    },
    nextDueAt() {
      let at: number | null = null;
      for (const p of pending.values()) if (p.value !== null && (at === null || p.value.nextAttemptAt < at)) at = p.value.nextAttemptAt;
      // the earliest stored one not changed since: at most pending.size rows come before it
      const stored = next.all(pending.size + 1).find((r) => !pending.has(r.key));
      return stored !== undefined && (at === null || stored.at < at) ? stored.at : at;
    },
    size() {
      let n = size.get()?.n ?? 0;
      for (const [key, p] of pending) {
        const inDb = get.get(key) !== undefined;
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
