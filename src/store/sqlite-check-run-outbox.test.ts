import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createSqliteCheckRunOutbox, type CheckRunEntry } from './sqlite-check-run-outbox.js';
import { createSqliteStatusOutbox } from './sqlite-status-outbox.js';
import { createSqliteWriter } from './sqlite-writer.js';

const entry = (over: Partial<CheckRunEntry> = {}): CheckRunEntry => ({
  key: 'b1',
  owner: 'acme',
  repo: 'widget',
  headSha: 'a'.repeat(40),
  name: 'autobuilder/x',
  externalId: 'b1',
  detailsUrl: 'http://ci.test/builds/b1',
  actions: [],
  checkRunId: null,
  desired: { status: 'queued', conclusion: null, startedAt: null, completedAt: null, output: { title: 'Queued', summary: 'Queued', text: null } },
  version: 1,
  sentVersion: 0,
  sentStatus: null,
  annotations: [],
  droppedAnnotations: 0,
  lastSentAt: null,
  attempts: 0,
  nextAttemptAt: 0,
  ...over,
});

describe('check run outbox', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });
  const newPath = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'autobuilder-check-outbox-'));
    dirs.push(dir);
    return join(dir, 'db');
  };

  test('a put replaces the entry of its key; due lists the earliest due first', () => {
    const outbox = createSqliteCheckRunOutbox({ path: ':memory:' });
    outbox.put(entry({ key: 'b2', externalId: 'b2', nextAttemptAt: 50 }));
    outbox.put(entry({ nextAttemptAt: 100 }));
    outbox.put(entry({ checkRunId: 7, version: 2, nextAttemptAt: 10 }));
    assert.equal(outbox.size(), 2);
    assert.deepEqual(
      outbox.due(100, 10).map((e) => [e.key, e.checkRunId, e.version]),
      [
        ['b1', 7, 2],
        ['b2', null, 1],
      ],
    );
    assert.deepEqual(
      outbox.due(20, 10).map((e) => e.key),
      ['b1'],
    );
    assert.equal(outbox.nextDueAt(), 10);
    outbox.remove('b1');
    assert.equal(outbox.get('b1'), null);
    assert.equal(outbox.nextDueAt(), 50);
    outbox.close();
  });

  test('get returns a copy: changing it changes nothing until put', () => {
    const outbox = createSqliteCheckRunOutbox({ path: ':memory:' });
    outbox.put(entry());
    const got = outbox.get('b1') as CheckRunEntry;
    got.checkRunId = 99;
    assert.equal(outbox.get('b1')?.checkRunId, null);
    outbox.close();
  });

  test('on a shared writer thread, reads see a put at once and the entry with its GitHub id survives a reopen', async () => {
    const path = await newPath();
    const writer = createSqliteWriter({ path });
    const statuses = createSqliteStatusOutbox({ path, writer });
    const outbox = createSqliteCheckRunOutbox({ path, writer: writer.share() });
    outbox.put(
      entry({
        checkRunId: 4242,
        sentVersion: 1,
        annotations: [{ path: 'main.c', start_line: 3, end_line: 3, annotation_level: 'warning', message: 'unused' }],
      }),
    );
    outbox.put(entry({ key: 'gone', externalId: 'gone' }));
    outbox.remove('gone');
    assert.equal(outbox.get('b1')?.checkRunId, 4242, 'seen before it is committed');
    assert.equal(outbox.size(), 1);
    await outbox.flush();
    outbox.close();
    statuses.close();

    const again = createSqliteCheckRunOutbox({ path });
    const stored = again.get('b1');
    assert.equal(stored?.checkRunId, 4242);
    assert.equal(stored.annotations[0]?.path, 'main.c');
    assert.equal(again.get('gone'), null);
    assert.equal(again.size(), 1);
    again.close();
  });
});
