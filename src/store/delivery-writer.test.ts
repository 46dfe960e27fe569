import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BuildRequest } from '../builds/build-request.js';
import { createDeliveryWriter, type DeliveryWriter } from './delivery-writer.js';
import { createSqliteBuildStore } from './sqlite-build-store.js';

const request = (deliveryId: string): BuildRequest => ({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha: 'a'.repeat(40), cloneUrl: 'file:///nowhere', defaultBranch: 'main', deliveryId });
const delivery = (id: string) => ({ id, event: 'push', receivedAt: new Date().toISOString(), outcome: 'accepted' });

describe('the delivery writer (group commit in a thread of its own)', () => {
  let dir: string;
  let path: string;
  let writer: DeliveryWriter;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'autobuilder-writer-'));
    path = join(dir, 'autobuilder.db');
    createSqliteBuildStore({ path }).close();
    writer = await createDeliveryWriter({ path });
  });
  after(async () => {
    await writer.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('many writes at once are all stored, each answered for itself; a repeated id answers false', async () => {
    const ids = Array.from({ length: 300 }, (_, i) => `d-${i}`);
    const answers = await Promise.all(ids.map((id) => writer.write([{ delivery: delivery(id), request: request(id) }])));
    assert.deepEqual(answers, ids.map(() => [true]));
    assert.deepEqual(await writer.write([{ delivery: delivery('d-7') }, { delivery: delivery('d-new') }]), [false, true]);
    const store = createSqliteBuildStore({ path });
    try {
      assert.equal(ids.filter((id) => store.getDelivery(id)?.outcome === 'accepted').length, 300);
      assert.equal(store.unprocessedDeliveries().length, 300);
    } finally {
      store.close();
    }
  });

  test('processed marks go through the same commits', async () => {
    await Promise.all(Array.from({ length: 300 }, (_, i) => writer.write([], [`d-${i}`])));
    const store = createSqliteBuildStore({ path });
    try {
      assert.deepEqual(store.unprocessedDeliveries(), []);
    } finally {
      store.close();
    }
  });

  test('close commits what is queued before the thread stops; later writes are refused', async () => {
    const pending = writer.write([{ delivery: delivery('last') }]);
    await writer.close();
    assert.deepEqual(await pending, [true]);
    await assert.rejects(writer.write([{ delivery: delivery('too-late') }]), /closed/);
    writer = await createDeliveryWriter({ path });
  });

  test('a database that cannot be opened fails the start', async () => {
    await assert.rejects(createDeliveryWriter({ path: join(dir, 'no', 'such', 'dir', 'x.db') }));
  });
});
