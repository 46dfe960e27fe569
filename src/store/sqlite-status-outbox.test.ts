import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createSqliteStatusOutbox, type NewOutboxEntry } from './sqlite-status-outbox.js';

const entry = (over: Partial<NewOutboxEntry> = {}): NewOutboxEntry => ({
  buildId: 'b1',
  owner: 'acme',
  repo: 'widget',
  sha: 'a'.repeat(40),
  context: 'autobuilder/x',
  state: 'pending',
  targetUrl: 'http://ci.test/builds/b1',
  description: 'Queued',
  ...over,
});

describe('status outbox', () => {
  test('a newer status of the same commit and context replaces the unsent older one', () => {
    const outbox = createSqliteStatusOutbox({ path: ':memory:' });
    const pending = outbox.enqueue(entry(), 0);
    const other = outbox.enqueue(entry({ context: 'autobuilder/y' }), 0);
    const success = outbox.enqueue(entry({ state: 'success' }), 0);
    assert.equal(outbox.has(pending), false);
    assert.deepEqual(
      outbox.due(0, 10).map((e) => [e.id, e.state, e.context]),
      [
        [other, 'pending', 'autobuilder/y'],
        [success, 'success', 'autobuilder/x'],
      ],
    );
  });

  test('a failed entry waits until its next attempt', () => {
    const outbox = createSqliteStatusOutbox({ path: ':memory:' });
    const id = outbox.enqueue(entry(), 1000);
    outbox.retryAt(id, 5000, 'HTTP 502');
    assert.deepEqual(outbox.due(4999, 10), []);
    assert.equal(outbox.nextDueAt(), 5000);
    assert.equal(outbox.due(5000, 10)[0]?.attempts, 1);
    outbox.remove(id);
    assert.equal(outbox.nextDueAt(), null);
    assert.equal(outbox.size(), 0);
  });

  test('survives a reopen of its database file', async () => {
    const path = join(await mkdtemp(join(tmpdir(), 'autobuilder-outbox-')), 'db');
    const first = createSqliteStatusOutbox({ path });
    first.enqueue(entry({ state: 'failure' }), 0);
    first.close();
    const second = createSqliteStatusOutbox({ path });
    assert.deepEqual(
      second.due(0, 10).map((e) => e.state),
      ['failure'],
    );
    second.close();
  });
});
