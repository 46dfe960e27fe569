import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createSqliteBuildStore } from '../src/store/index.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

describe('the durable webhook inbox', () => {
  let f: FixtureServer;
  before(async () => {
    f = await startFixtureServer('inbox');
  });
  after(async () => {
    await f.close();
  });

  test('a redelivery of the same X-GitHub-Delivery never builds twice', async () => {
    const sha = await f.repo.commit({ 'message.txt': 'delivered twice\n' }, 'twice');
    const payload = pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl: f.cloneUrl });
    const first = await deliver(f.server.url, { event: 'push', payload, secret: f.secret });
    assert.equal(first.status, 202);
    const again = await deliver(f.server.url, { event: 'push', payload, secret: f.secret, deliveryId: first.deliveryId });
    assert.equal(again.status, 200);
    assert.equal((again.body as { duplicate: boolean }).duplicate, true);
    await f.waitForBuild((b) => b.sha === sha);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await f.builds()).filter((b) => b.sha === sha).length, 1);
  });

  test('a signed delivery without X-GitHub-Delivery is stored under the sha256 of its body, built once, and deduplicated', async () => {
    const sha = await f.repo.commit({ 'message.txt': 'no delivery id\n' }, 'no delivery id');
    const payload = pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl: f.cloneUrl });
    const expectedId = `sha256:${createHash('sha256').update(JSON.stringify(payload)).digest('hex')}`;
    const first = await deliver(f.server.url, { event: 'push', payload, secret: f.secret, headers: { 'x-github-delivery': null } });
    assert.equal(first.status, 202, JSON.stringify(first.body));
    assert.equal((first.body as { deliveryId: string }).deliveryId, expectedId);
    assert.equal(f.server.store.getDelivery(expectedId)?.outcome, 'accepted');
    const again = await deliver(f.server.url, { event: 'push', payload, secret: f.secret, headers: { 'x-github-delivery': null } });
    assert.equal(again.status, 200);
    assert.equal((again.body as { duplicate: boolean }).duplicate, true);
    const build = await f.waitForBuild((b) => b.sha === sha);
    assert.equal(build.deliveryId, expectedId);
    assert.equal((await f.builds()).filter((b) => b.sha === sha).length, 1);
  });

  test('a delivery accepted but never handed on (a crash after the answer) is built after the next start', async () => {
    const sha = await f.repo.commit({ 'message.txt': 'accepted before a crash\n' }, 'crash');
    await f.server.close();
    // what a process killed between its 202 and the work leaves: a stored, unprocessed delivery
    const store = createSqliteBuildStore({ path: join(f.dir, 'data', 'autobuilder.db') });
    const accepted = store.writeDeliveries(
      [
        {
          delivery: { id: 'delivery-before-the-crash', event: 'push', receivedAt: new Date().toISOString(), outcome: 'accepted' },
          request: {
            owner: 'acme',
            repo: 'widget',
            ref: 'refs/heads/main',
            sha,
            cloneUrl: f.cloneUrl,
            defaultBranch: 'main',
            deliveryId: 'delivery-before-the-crash',
          },
        },
      ],
      [],
    );
    assert.deepEqual(accepted, [true]);
    store.close();
    await f.restart();
    const build = await f.waitForBuild((b) => b.sha === sha);
    assert.equal(build.state, 'success');
    assert.equal(build.deliveryId, 'delivery-before-the-crash');
    assert.deepEqual(f.server.store.unprocessedDeliveries(), []);
  });

  test('the builds of a delivery and its processed mark are stored together or not at all', async () => {
    const store = createSqliteBuildStore({ path: join(f.dir, 'atomic.db') });
    try {
      const request = {
        owner: 'acme',
        repo: 'widget',
        ref: 'refs/heads/main',
        sha: 'c'.repeat(40),
        cloneUrl: f.cloneUrl,
        defaultBranch: 'main',
        deliveryId: 'd-atomic',
      };
      store.writeDeliveries([{ delivery: { id: 'd-atomic', event: 'push', receivedAt: new Date().toISOString(), outcome: 'accepted' }, request }], []);
      const template = (await f.builds())[0];
      assert.ok(template, 'an earlier test left a build to copy');
      const one = { ...template, id: 'atomic-1' };
      // the second record reuses an id: the whole transaction rolls back
      assert.throws(() => store.insertForRequest([one, { ...template, id: 'atomic-1' }], request));
      assert.equal(store.get('atomic-1'), null);
      assert.deepEqual(
        store.unprocessedDeliveries().map((d) => d.id),
        ['d-atomic'],
      );
      store.insertForRequest([one, { ...template, id: 'atomic-2' }], request);
      assert.equal(store.get('atomic-2')?.id, 'atomic-2');
      // stored with its builds: a restart hands nothing on again, so nothing builds twice
      assert.deepEqual(store.unprocessedDeliveries(), []);
    } finally {
      store.close();
    }
  });
});
