import type Database from 'better-sqlite3';
import type { DeliveryWrite } from './build-store.js';
import type { DeadRef } from './dead-refs.js';
import type { NewOutboxEntry } from './status-outbox.js';

/** A build as the `builds` table stores it: the indexed columns and the whole record as JSON (`doc`). */
export interface BuildRow {
  id: string;
  repo: string;
  ref: string;
  state: string;
  queuedAt: string;
  doc: string;
  definition: string;
  cacheKey: string | null;
  cached: 0 | 1;
}

/**
 * One change to the database, as plain data (it crosses to the writer thread by
 * `postMessage`). Every value is decided by the caller (ids, timestamps), so applying it
 * gives the rows the caller's in-memory view already shows.
 */
export type WriteOp =
  /** new builds, and the delivery they were made for marked processed, in one transaction */
  | { kind: 'builds.insert'; rows: BuildRow[]; request: string | null; processed: { deliveryId: string; at: string } | null }
  | { kind: 'builds.update'; row: Omit<BuildRow, 'repo' | 'ref' | 'queuedAt' | 'definition'> }
  | { kind: 'builds.delete'; id: string }
  | { kind: 'deliveries.write'; records: DeliveryWrite[]; processed: string[]; at: string }
  | { kind: 'deliveries.prune'; before: string }
  | { kind: 'outbox.enqueue'; id: number; entry: NewOutboxEntry; now: number }
  | { kind: 'outbox.remove'; id: number }
  | { kind: 'outbox.retry'; id: number; nextAttemptAt: number; error: string }
  /** a check run's whole outbox entry (JSON), replacing the one of its key */
  | { kind: 'checks.put'; key: string; nextAttemptAt: number; doc: string }
  | { kind: 'checks.remove'; key: string }
  | { kind: 'deadRefs.mark'; ref: DeadRef }
  | { kind: 'deadRefs.forget'; repo: string; ref: string };

/** What applying an op returns: whether each delivery was stored (`deliveries.write`), rows deleted (`deliveries.prune`), else nothing. */
export type WriteResult = boolean[] | number | undefined;

/**
 * The statements that apply {@link WriteOp}s to `db`, prepared once. `apply` runs one op in
 * a transaction of its own (a savepoint inside an enclosing one), so an op that fails
 * leaves nothing behind; it throws the SqliteError, or an Error when an update finds no row.
 */
export function createWriteOps(db: Database.Database): { apply(op: WriteOp): WriteResult } {
  const insertBuild = db.prepare(
    `INSERT INTO builds (id, repo, ref, state, queued_at, doc, definition, cache_key, cached, request)
     VALUES (@id, @repo, @ref, @state, @queuedAt, @doc, @definition, @cacheKey, @cached, @request)`,
  );
  const updateBuild = db.prepare('UPDATE builds SET state = @state, doc = @doc, cache_key = @cacheKey, cached = @cached WHERE id = @id');
  const deleteBuild = db.prepare<[string]>('DELETE FROM builds WHERE id = ?');
  // a delivery without a request needs no processing: it is born processed
  const insertDelivery = db.prepare(
    `INSERT INTO deliveries (id, event, received_at, outcome, request, processed_at)
     VALUES (@id, @event, @receivedAt, @outcome, @request, CASE WHEN @request IS NULL THEN @receivedAt END)
     ON CONFLICT (id) DO NOTHING`,
  );
  const markProcessed = db.prepare<[string, string]>('UPDATE deliveries SET processed_at = ? WHERE id = ?');
  const prune = db.prepare<[string]>('DELETE FROM deliveries WHERE received_at < ? AND processed_at IS NOT NULL');
  const dropOlderStatuses = db.prepare('DELETE FROM status_outbox WHERE owner = @owner AND repo = @repo AND sha = @sha AND context = @context');
  const insertStatus = db.prepare(
    `INSERT INTO status_outbox (id, build_id, owner, repo, sha, context, state, target_url, description, next_attempt_at)
     VALUES (@id, @buildId, @owner, @repo, @sha, @context, @state, @targetUrl, @description, @now)`,
  );
  const removeStatus = db.prepare<[number]>('DELETE FROM status_outbox WHERE id = ?');
  const retryStatus = db.prepare<[number, string, number]>(
    'UPDATE status_outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?',
  );
  const putCheck = db.prepare<[string, number, string]>(
    'INSERT INTO check_run_outbox (key, next_attempt_at, doc) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET next_attempt_at = excluded.next_attempt_at, doc = excluded.doc',
  );
  const removeCheck = db.prepare<[string]>('DELETE FROM check_run_outbox WHERE key = ?');
  const markDead = db.prepare('INSERT INTO dead_refs (repo, ref, dead_at) VALUES (@repo, @ref, @deadAt) ON CONFLICT (repo, ref) DO NOTHING');
  const forgetDead = db.prepare<[string, string]>('DELETE FROM dead_refs WHERE repo = ? AND ref = ?');

  const run = (op: WriteOp): WriteResult => {
    switch (op.kind) {
      case 'builds.insert':
        for (const row of op.rows) insertBuild.run({ ...row, request: op.request });
        if (op.processed !== null) markProcessed.run(op.processed.at, op.processed.deliveryId);
        return undefined;
      case 'builds.update':
        if (updateBuild.run(op.row).changes !== 1) throw new Error(`build ${op.row.id} is not stored`);
        return undefined;
      case 'builds.delete':
        deleteBuild.run(op.id);
        return undefined;
      case 'deliveries.write': {
        const stored = op.records.map(
          ({ delivery, request }) => insertDelivery.run({ ...delivery, request: request === undefined ? null : JSON.stringify(request) }).changes === 1,
        );
        for (const id of op.processed) markProcessed.run(op.at, id);
        return stored;
      }
      case 'deliveries.prune':
        return prune.run(op.before).changes;
      case 'outbox.enqueue':
        dropOlderStatuses.run(op.entry);
        insertStatus.run({ ...op.entry, id: op.id, now: op.now });
        return undefined;
      case 'outbox.remove':
        removeStatus.run(op.id);
        return undefined;
      case 'outbox.retry':
        retryStatus.run(op.nextAttemptAt, op.error, op.id);
        return undefined;
      case 'checks.put':
        putCheck.run(op.key, op.nextAttemptAt, op.doc);
        return undefined;
      case 'checks.remove':
        removeCheck.run(op.key);
        return undefined;
      case 'deadRefs.mark':
        markDead.run(op.ref);
        return undefined;
      case 'deadRefs.forget':
        forgetDead.run(op.repo, op.ref);
        return undefined;
      default: {
        const unreachable: never = op;
        return unreachable;
      }
    }
  };
  const apply = db.transaction(run);
  return { apply: (op) => apply(op) };
}
