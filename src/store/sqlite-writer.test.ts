import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { Build } from '../builds/build.js';
import { buildRecord } from '../../test/support/build-record.js';
import { makeTestDir } from '../../test/support/data-dir.js';
import { openDatabase } from './open-database.js';
import { createSqliteBuildStore } from './sqlite-build-store.js';
import { createSqliteDeadRefs } from './sqlite-dead-refs.js';
import { createSqliteStatusOutbox } from './sqlite-status-outbox.js';
import { createSqliteWriter } from './sqlite-writer.js';

const buildOf = (i: number, over: Partial<Build> = {}): Build =>
  buildRecord({
    id: `w${String(i).padStart(6, '0')}`,
    state: 'queued',
    exitCode: null,
    queuedAt: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString(),
    ...over,
  });

/** What another connection (a later process) finds on disk. */
const onDisk = (path: string, sql: string): unknown[] => {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare(sql).all();
  } finally {
    db.close();
  }
};

describe('writes through the writer thread', () => {
  test('reads see every write at once, before it is committed', async () => {
    const path = join(await makeTestDir('writer-ryw'), 'autobuilder.db');
    const store = createSqliteBuildStore({ path });
    try {
      store.insert(buildOf(1, { cacheKey: 'k' }));
      store.update({ ...buildOf(1, { cacheKey: 'k' }), state: 'success' });
      assert.deepEqual(onDisk(path, 'SELECT id FROM builds'), [], 'not yet committed');
      assert.equal(store.get(buildOf(1).id)?.state, 'success');
      assert.equal(store.findSuccessByCacheKey('k')?.id, buildOf(1).id);
      assert.equal(store.count('success'), 1);
      assert.equal(store.count('queued'), 0);
      assert.deepEqual(
        store.list({ state: 'success' }).map((b) => b.id),
        [buildOf(1).id],
      );
      store.delete(buildOf(1).id);
      assert.equal(store.get(buildOf(1).id), null);
      assert.equal(store.count('success'), 0);
      await store.flush();
      assert.deepEqual(onDisk(path, 'SELECT id FROM builds'), []);
    } finally {
      store.close();
    }
  });

  test('commits in call order: what is on disk is always a prefix of the writes', async () => {
    const path = join(await makeTestDir('writer-order'), 'autobuilder.db');
    const store = createSqliteBuildStore({ path });
    try {
      const seen: number[] = [];
      for (let i = 0; i < 2000; i++) {
        store.insert(buildOf(i));
        // a reader on disk meanwhile: the stored ids are always 0..n-1, never a gap
        if (i % 250 === 0) {
          await new Promise((r) => setImmediate(r));
          const ids = (onDisk(path, 'SELECT id FROM builds ORDER BY id') as { id: string }[]).map((r) => r.id);
          assert.deepEqual(
            ids,
            Array.from({ length: ids.length }, (_, n) => buildOf(n).id),
          );
          seen.push(ids.length);
        }
      }
      await store.flush();
      assert.equal((onDisk(path, 'SELECT COUNT(*) AS n FROM builds') as { n: number }[])[0]?.n, 2000);
      assert.equal(store.list({ limit: 500 }).length, 500);
    } finally {
      store.close();
    }
  });

  test('close commits what is queued before it returns; later writes throw', async () => {
    const path = join(await makeTestDir('writer-close'), 'autobuilder.db');
    const store = createSqliteBuildStore({ path });
    const outbox = createSqliteStatusOutbox({ path });
    const deadRefs = createSqliteDeadRefs({ path });
    for (let i = 0; i < 100; i++) store.insert(buildOf(i));
    const id = outbox.enqueue(
      { buildId: 'b', owner: 'acme', repo: 'widget', sha: 'a'.repeat(40), context: 'c', state: 'pending', targetUrl: 'http://x', description: 'd' },
      0,
    );
    deadRefs.mark({ repo: 'acme/widget', ref: 'refs/heads/gone', deadAt: '2024-01-01T00:00:00.000Z' });
    store.close();
    outbox.close();
    deadRefs.close();
    assert.equal((onDisk(path, 'SELECT COUNT(*) AS n FROM builds') as { n: number }[])[0]?.n, 100);
    assert.deepEqual(onDisk(path, 'SELECT id FROM status_outbox'), [{ id }]);
    assert.deepEqual(onDisk(path, 'SELECT ref FROM dead_refs'), [{ ref: 'refs/heads/gone' }]);
    assert.throws(() => store.insert(buildOf(200)), /closed/);
    const again = createSqliteBuildStore({ path });
    try {
      assert.equal(again.list({ limit: 500 }).length, 100);
    } finally {
      again.close();
    }
  });

  test('a write the database refuses is reported to flush and onWriteError, and reads fall back to what is stored', async () => {
    const path = join(await makeTestDir('writer-refused'), 'autobuilder.db');
    const setup = openDatabase(path);
    setup.exec(`CREATE TRIGGER refuse_b2 BEFORE INSERT ON builds WHEN NEW.id = '${buildOf(2).id}' BEGIN SELECT RAISE(FAIL, 'refused by the test'); END;`);
    setup.close();
    const errors: string[] = [];
    const store = createSqliteBuildStore({ path, onWriteError: (err) => errors.push(err.message) });
    try {
      store.insert(buildOf(1));
      store.insert(buildOf(2));
      store.insert(buildOf(3));
      assert.equal(store.get(buildOf(2).id)?.id, buildOf(2).id, 'seen before the commit');
      await assert.rejects(store.flush(), /refused by the test/);
      assert.deepEqual(errors, ['refused by the test']);
      // reported once; the writes around it are stored
      await store.flush();
      assert.equal(store.get(buildOf(2).id), null);
      assert.deepEqual(
        store.listKeys().map((k) => k.id),
        [buildOf(1).id, buildOf(3).id],
      );
    } finally {
      store.close();
    }
  });

  test('an insert of a stored id and an update of an unknown one throw at the call', async () => {
    const path = join(await makeTestDir('writer-contract'), 'autobuilder.db');
    const store = createSqliteBuildStore({ path });
    try {
      store.insert(buildOf(1));
      assert.throws(() => store.insert(buildOf(1)), /already stored/);
      assert.throws(() => store.update(buildOf(9)), /not stored/);
      await store.flush();
    } finally {
      store.close();
    }
  });

  test('the status outbox and dead refs see their own writes before the commit', async () => {
    const path = join(await makeTestDir('writer-outbox'), 'autobuilder.db');
    const outbox = createSqliteStatusOutbox({ path });
    const deadRefs = createSqliteDeadRefs({ path });
    try {
      const entry = {
        buildId: 'b',
        owner: 'acme',
        repo: 'widget',
        sha: 'a'.repeat(40),
        context: 'c',
        state: 'pending' as const,
        targetUrl: 'http://x',
        description: 'd',
      };
      const first = outbox.enqueue(entry, 10);
      await outbox.flush();
      const second = outbox.enqueue({ ...entry, state: 'success' }, 20);
      assert.equal(outbox.has(first), false);
      assert.equal(outbox.size(), 1);
      assert.deepEqual(
        outbox.due(100, 10).map((e) => e.id),
        [second],
      );
      outbox.retryAt(second, 500, 'HTTP 502');
      assert.equal(outbox.nextDueAt(), 500);
      assert.equal(outbox.due(100, 10).length, 0);
      deadRefs.mark({ repo: 'acme/widget', ref: 'refs/heads/x', deadAt: '2024-01-02T00:00:00.000Z' });
      deadRefs.mark({ repo: 'acme/widget', ref: 'refs/heads/x', deadAt: '2024-01-09T00:00:00.000Z' });
      assert.deepEqual(
        deadRefs.list().map((r) => r.deadAt),
        ['2024-01-02T00:00:00.000Z'],
      );
      deadRefs.forget('acme/widget', 'refs/heads/x');
      assert.deepEqual(deadRefs.list(), []);
      await outbox.flush();
      assert.deepEqual(onDisk(path, 'SELECT id, attempts, next_attempt_at AS at FROM status_outbox'), [{ id: second, attempts: 1, at: 500 }]);
    } finally {
      outbox.close();
      deadRefs.close();
    }
  });
});

describe('stores sharing one writer thread', () => {
  const entryOf = (i: number) => ({
    buildId: buildOf(i).id,
    owner: 'acme',
    repo: 'widget',
    sha: String(i).padStart(40, '0'),
    context: 'c',
    state: 'pending' as const,
    targetUrl: 'http://x',
    description: 'd',
  });
  const count = (path: string, table: string): number => (onDisk(path, `SELECT COUNT(*) AS n FROM ${table}`) as { n: number }[])[0]?.n ?? 0;

  test('commit in call order across tables: a status is never on disk without the build it was queued after', async () => {
    const path = join(await makeTestDir('writer-shared-order'), 'autobuilder.db');
    const writer = createSqliteWriter({ path });
    const store = createSqliteBuildStore({ path, writer });
    const outbox = createSqliteStatusOutbox({ path, writer: writer.share() });
    try {
      for (let i = 0; i < 1500; i++) {
        store.insert(buildOf(i));
        outbox.enqueue(entryOf(i), 0);
        if (i % 100 === 0) {
          await new Promise((r) => setImmediate(r));
          // read statuses first: the builds read after can only be more
          const statuses = count(path, 'status_outbox');
          const builds = count(path, 'builds');
          assert.ok(builds >= statuses, `${statuses} statuses on disk before their ${builds} builds`);
        }
      }
      await outbox.flush();
      assert.equal(count(path, 'builds'), 1500, 'the builds written before the last status are committed with it');
    } finally {
      store.close();
      outbox.close();
    }
  });

  test('a refused write is reported to its own store only', async () => {
    const path = join(await makeTestDir('writer-shared-refused'), 'autobuilder.db');
    const setup = openDatabase(path);
    setup.exec(`CREATE TRIGGER refuse_b2 BEFORE INSERT ON builds WHEN NEW.id = '${buildOf(2).id}' BEGIN SELECT RAISE(FAIL, 'refused by the test'); END;`);
    setup.close();
    const storeErrors: string[] = [];
    const deadRefErrors: string[] = [];
    const writer = createSqliteWriter({ path, onWriteError: (err) => storeErrors.push(err.message) });
    const store = createSqliteBuildStore({ path, writer });
    const deadRefs = createSqliteDeadRefs({ path, writer: writer.share({ onWriteError: (err) => deadRefErrors.push(err.message) }) });
    const outbox = createSqliteStatusOutbox({ path, writer: writer.share() });
    try {
      store.insert(buildOf(1));
      deadRefs.mark({ repo: 'acme/widget', ref: 'refs/heads/x', deadAt: '2024-01-02T00:00:00.000Z' });
      store.insert(buildOf(2));
      outbox.enqueue(entryOf(2), 0);
      await outbox.flush();
      await assert.rejects(store.flush(), /refused by the test/);
      assert.deepEqual(storeErrors, ['refused by the test']);
      assert.deepEqual(deadRefErrors, []);
      assert.equal(store.get(buildOf(2).id), null);
      assert.equal(outbox.size(), 1);
      assert.equal(deadRefs.list().length, 1);
    } finally {
      store.close();
      deadRefs.close();
      outbox.close();
    }
  });

  test('closing one store commits what is queued and leaves the others writing; the last close stops the thread', async () => {
    const path = join(await makeTestDir('writer-shared-close'), 'autobuilder.db');
    const writer = createSqliteWriter({ path });
    const store = createSqliteBuildStore({ path, writer });
    const outbox = createSqliteStatusOutbox({ path, writer: writer.share() });
    const deadRefs = createSqliteDeadRefs({ path, writer: writer.share() });
    for (let i = 0; i < 50; i++) store.insert(buildOf(i));
    outbox.enqueue(entryOf(1), 0);
    store.close();
    assert.equal(count(path, 'builds'), 50);
    assert.equal(count(path, 'status_outbox'), 1, "another store's change queued before the close is committed with it");
    assert.throws(() => store.insert(buildOf(60)), /closed/);
    deadRefs.mark({ repo: 'acme/widget', ref: 'refs/heads/gone', deadAt: '2024-01-01T00:00:00.000Z' });
    await new Promise((r) => setTimeout(r, 0));
    outbox.enqueue(entryOf(2), 0);
    await outbox.flush();
    assert.equal(count(path, 'status_outbox'), 2);
    outbox.close();
    deadRefs.close();
    assert.deepEqual(onDisk(path, 'SELECT ref FROM dead_refs'), [{ ref: 'refs/heads/gone' }]);
    assert.throws(() => writer.share(), /closed/);
  });
});
