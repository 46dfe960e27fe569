import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BuildRequest } from '../builds/build-request.js';
import type { Worker } from 'node:worker_threads';
import { createDeliveryWriter, startDeliveryWriterThread, type DeliveryWriter } from './delivery-writer.js';
import { createSqliteBuildStore } from './sqlite-build-store.js';

const request = (deliveryId: string): BuildRequest => ({
  owner: 'acme',
  repo: 'widget',
  ref: 'refs/heads/main',
  sha: 'a'.repeat(40),
  cloneUrl: 'file:///nowhere',
  defaultBranch: 'main',
  deliveryId,
});
const delivery = (id: string) => ({ id, event: 'push', receivedAt: new Date().toISOString(), outcome: 'accepted' });

describe('the delivery writer (group commit in a thread of its own)', () => {
  let dir: string;
  let path: string;
  let writer: DeliveryWriter;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'autobuilder-writer-'));
    path = join(dir, 'autobuilder.db');
    createSqliteBuildStore({ path }).close();
    writer = createDeliveryWriter({ path });
  });
  after(async () => {
    await writer.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('many writes at once are all stored, each answered for itself; a repeated id answers false', async () => {
    const ids = Array.from({ length: 300 }, (_, i) => `d-${i}`);
    const answers = await Promise.all(ids.map((id) => writer.write([{ delivery: delivery(id), request: request(id) }])));
    assert.deepEqual(
      answers,
      ids.map(() => [true]),
    );
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
    writer = createDeliveryWriter({ path });
  });

  test('a thread that dies fails the writes it held and is started again for the next ones', async () => {
    const threads: Worker[] = [];
    const exits: string[] = [];
    const own = createDeliveryWriter({
      path,
      startThread: async (p) => {
        const thread = await startDeliveryWriterThread(p);
        threads.push(thread);
        return thread;
      },
      onThreadExit: (err) => exits.push(err.message),
    });
    try {
      assert.deepEqual(await own.write([{ delivery: delivery('before-death') }]), [true]);
      const held = own.write([{ delivery: delivery('held-at-death') }]);
      await threads[0]?.terminate();
      // committed before the thread went, or refused: never answered true and then lost
      const outcome = await held.then(
        (stored) => `stored ${stored.join()}`,
        (err: Error) => `refused: ${err.message}`,
      );
      assert.match(outcome, /^stored true$|^refused: the delivery writer thread stopped$/);
      assert.deepEqual(exits, ['the delivery writer thread stopped']);
      assert.deepEqual(await own.write([{ delivery: delivery('after-death') }]), [true]);
      assert.equal(threads.length, 2, 'a new thread was started');
      const store = createSqliteBuildStore({ path });
      try {
        assert.equal(store.getDelivery('after-death')?.outcome, 'accepted');
        // answered stored, so it is stored (a refused one may be too: committed, then the answer
        // was lost; it stays unprocessed and the next start hands it on)
        if (outcome === 'stored true') assert.equal(store.getDelivery('held-at-death')?.outcome, 'accepted');
      } finally {
        store.close();
      }
    } finally {
      await own.close();
    }
  });

  test('starts no thread until the first write; a closed writer that never wrote starts none', async () => {
    let started = 0;
    const startThread = (p: string): Promise<Worker> => {
      started++;
      return startDeliveryWriterThread(p);
    };
    const idle = createDeliveryWriter({ path, startThread });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(started, 0);
    await idle.close();
    assert.equal(started, 0);
    const lazy = createDeliveryWriter({ path, startThread });
    try {
      assert.deepEqual(await Promise.all([lazy.write([{ delivery: delivery('lazy-1') }]), lazy.write([{ delivery: delivery('lazy-2') }])]), [[true], [true]]);
      assert.equal(started, 1, 'one thread for the writes queued while it started');
    } finally {
      await lazy.close();
    }
  });

  test('a database that cannot be opened fails the writes, and the next write tries again', async () => {
    const broken = createDeliveryWriter({ path: join(dir, 'no', 'such', 'dir', 'x.db') });
    try {
      await assert.rejects(broken.write([{ delivery: delivery('nowhere-1') }]));
      await assert.rejects(broken.write([{ delivery: delivery('nowhere-2') }]));
    } finally {
      await broken.close();
    }
  });
});
