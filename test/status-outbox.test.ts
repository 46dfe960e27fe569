import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import type { RecordedRequest } from './support/github-stand-in.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

const statusesFor = (sha: string) => (r: RecordedRequest) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === sha;
const stateOf = (r: RecordedRequest) => (r.body as { state: string }).state;

describe('commit statuses survive a GitHub outage and a restart', () => {
  let f: FixtureServer;
  before(async () => {
    f = await startFixtureServer('status-outbox');
  });
  after(async () => {
    f.github.failWith(null);
    await f.close();
  });

  const build = async (content: string) => {
    const sha = await f.repo.commit({ 'message.txt': content }, content);
    const response = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl: f.cloneUrl }),
    });
    assert.equal(response.status, 202);
    const done = await f.waitForBuild((b) => b.sha === sha);
    assert.equal(done.state, 'success', 'a GitHub outage does not hold a build up');
    return sha;
  };

  test('every final status arrives, once, after GitHub answered 502 for a while', async () => {
    f.github.failWith(502);
    const shas = [await build('outage 1\n'), await build('outage 2\n')];
    await new Promise((r) => setTimeout(r, 2500));
    assert.ok(f.github.failedCount > 0, 'posts were tried during the outage');
    for (const sha of shas) assert.deepEqual(f.github.requests.filter(statusesFor(sha)), []);
    f.github.failWith(null);
    for (const sha of shas) {
      const [final] = await f.github.waitFor((r) => statusesFor(sha)(r) && stateOf(r) === 'success', 1, 60_000);
      assert.ok(final);
    }
    await new Promise((r) => setTimeout(r, 1500));
    for (const sha of shas) {
      const posted = f.github.requests.filter(statusesFor(sha)).map(stateOf);
      // the pending status was replaced in the outbox by the final one: it is never posted after it
      assert.deepEqual(posted, ['success'], `statuses of ${sha}`);
    }
  });

  test('a status still queued when the server stops is posted after the next start', async () => {
    f.github.failWith(502);
    const sha = await build('across a restart\n');
    await f.restart();
    f.github.failWith(null);
    const [final] = await f.github.waitFor((r) => statusesFor(sha)(r) && stateOf(r) === 'success', 1, 60_000);
    assert.ok(final);
    assert.deepEqual(f.github.requests.filter(statusesFor(sha)).map(stateOf), ['success']);
  });
});
