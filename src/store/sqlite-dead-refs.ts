import { openStore, type StoreOptions } from './sqlite-writer.js';
import type { DeadRef, DeadRefs } from './dead-refs.js';

export type { DeadRef, DeadRefs } from './dead-refs.js';

const keyOf = (repo: string, ref: string): string => `${repo}\u0000${ref}`;

/**
 * Creates the dead-ref marks in the SQLite database at `path` (the build store's file; an
 * additive table), or `:memory:`. Writes go as the build store's do (see
 * `createSqliteBuildStore`): through a writer thread, kept in memory until committed, so
 * `list` sees them at once; on disk typically one fsync later, a crash losing at most the
 * newest ones (a lost mark is set again by the ref's next delete or close, a lost forget is
 * done again by the next retention pass). With `:memory:` or `direct: true`, each is
 * committed before it returns. `writer` is as the build store's (a shared handle).
 */
export function createSqliteDeadRefs(options: StoreOptions): DeadRefs {
  const { db, writer } = openStore(options);
  const all = db.prepare<[], { repo: string; ref: string; dead_at: string }>('SELECT repo, ref, dead_at FROM dead_refs ORDER BY dead_at, repo, ref');
  const get = db.prepare<[string, string], { dead_at: string }>('SELECT dead_at FROM dead_refs WHERE repo = ? AND ref = ?');
  /** marks as the uncommitted changes left them (null: forgotten), by repo and ref */
  const pending = new Map<string, { value: DeadRef | null; seq: number }>();
  writer.onSettled((seq) => {
    for (const [key, p] of pending) if (p.seq <= seq) pending.delete(key);
  });
  const write = (op: Parameters<typeof writer.write>[0], overlay: (seq: number) => void): void => {
    if (writer.direct !== null) writer.direct(op);
    else overlay(writer.write(op));
  };
  return {
    mark(ref) {
      const key = keyOf(ref.repo, ref.ref);
      const p = pending.get(key);
      // the first mark stays
      if (p === undefined ? get.get(ref.repo, ref.ref) !== undefined : p.value !== null) return;
      write({ kind: 'deadRefs.mark', ref: { ...ref } }, (seq) => pending.set(key, { value: { ...ref }, seq }));
    },
    list() {
      const out = all
        .all()
        .filter((r) => !pending.has(keyOf(r.repo, r.ref)))
        .map((r) => ({ repo: r.repo, ref: r.ref, deadAt: r.dead_at }));
      if (pending.size === 0) return out;
      for (const p of pending.values()) if (p.value !== null) out.push({ ...p.value });
      const order = (r: DeadRef) => [r.deadAt, r.repo, r.ref].join('\u0000');
      return out.sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0));
    },
    forget(repo, ref) {
      write({ kind: 'deadRefs.forget', repo, ref }, (seq) => pending.set(keyOf(repo, ref), { value: null, seq }));
    },
    close() {
      try {
        writer.close();
      } finally {
        db.close();
      }
    },
  };
}
