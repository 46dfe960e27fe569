import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openDatabase } from './open-database.js';

/** The plan SQLite picks for `sql`, one detail line per step. */
function planOf(sql: string, params: Record<string, string | number>): string[] {
  const db = openDatabase(':memory:');
  try {
    return (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(params) as { detail: string }[]).map((r) => r.detail);
  } finally {
    db.close();
  }
}

// the statements the build store runs for history pages, the monitor and /metrics (see sqlite-build-store.ts)
const page = (where: string, order = 'DESC') => `SELECT doc FROM builds ${where} ORDER BY queued_at ${order}, id ${order} LIMIT @limit`;
const cases: [string, string, Record<string, string | number>][] = [
  ['a history page', page(''), { limit: 50 }],
  ['a history page after a cursor', page('WHERE (queued_at, id) < (@olderQueuedAt, @olderId)'), { limit: 50, olderQueuedAt: 'x', olderId: 'y' }],
  [
    'a page of one repository',
    page('WHERE repo = @repo AND (queued_at, id) < (@olderQueuedAt, @olderId)'),
    { limit: 50, repo: 'r', olderQueuedAt: 'x', olderId: 'y' },
  ],
  [
    'a page of one ref',
    page('WHERE repo = @repo AND ref = @ref AND (queued_at, id) < (@olderQueuedAt, @olderId)'),
    { limit: 50, repo: 'r', ref: 'f', olderQueuedAt: 'x', olderId: 'y' },
  ],
  ['the running or queued builds (monitor snapshot)', page('WHERE state = @state'), { limit: 500, state: 'queued' }],
  ['the oldest queued build (/metrics)', page('WHERE state = @state', 'ASC'), { limit: 1, state: 'queued' }],
  [
    'a page of one state after a cursor',
    page('WHERE state = @state AND (queued_at, id) < (@olderQueuedAt, @olderId)'),
    { limit: 50, state: 's', olderQueuedAt: 'x', olderId: 'y' },
  ],
  ['the count of one state (/metrics)', 'SELECT COUNT(*) AS n FROM builds WHERE state = @state', { state: 'queued' }],
  [
    "a commit's builds in one repository (a re-run check suite)",
    "SELECT doc FROM builds WHERE repo = @repo AND json_extract(doc, '$.sha') = @sha ORDER BY id DESC LIMIT @limit",
    { repo: 'r', sha: 's', limit: 100 },
  ],
];

describe('query plans of pages and counts', () => {
  for (const [name, sql, params] of cases) {
    test(`${name} is read from an index, with no table scan and no sort`, () => {
      const plan = planOf(sql, params);
      assert.ok(
        plan.some((step) => /USING (COVERING )?INDEX builds_/.test(step)),
        plan.join('\n'),
      );
      assert.ok(!plan.some((step) => /^SCAN builds$|TEMP B-TREE/.test(step)), plan.join('\n'));
    });
  }
});
