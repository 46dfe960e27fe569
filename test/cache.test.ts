import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { containersCreated, nextWholeSecond } from './support/docker-events.js';
import type { RecordedRequest } from './support/github-stand-in.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

const statusesFor = (sha: string) => (r: RecordedRequest) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === sha;
const stateOf = (r: RecordedRequest) => (r.body as { state: string }).state;

describe('content-hash build cache and coalescing', () => {
  let f: FixtureServer;
  before(async () => {
    f = await startFixtureServer('cache');
  });
  after(async () => {
    await f.close();
  });

  /** Build containers Docker created since `since` for builds of this server (other users of the engine do not count). */
  const ourContainers = async (since: Date) => {
    const ids = new Set((await f.builds()).map((b) => b.id));
    return (await containersCreated(since)).filter((id) => ids.has(id));
  };

  const push = async (ref: string, sha: string) => {
    const response = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref, sha, tree: await f.repo.treeOf(sha), cloneUrl: f.cloneUrl }),
    });
    assert.equal(response.status, 202);
  };

  test('a second commit with the same tree is answered from the cache without a container', async () => {
    const first = f.repo.head as string;
    await push('refs/heads/main', first);
    const original = await f.waitForBuild((b) => b.sha === first);
    assert.equal(original.state, 'success');
    assert.equal(original.cached, false);
    assert.match(original.cacheKey ?? '', /^[0-9a-f]{64}$/);

    const second = await f.repo.commitEmpty('only the message differs');
    const since = await nextWholeSecond();
    await push('refs/heads/main', second);
    const cached = await f.waitForBuild((b) => b.sha === second);
    assert.equal(cached.state, 'success');
    assert.equal(cached.cached, true);
    assert.equal(cached.sourceBuildId, original.id);
    assert.equal(cached.cacheKey, original.cacheKey);
    assert.equal(cached.startedAt, null);
    assert.deepEqual(
      cached.artifacts.map((a) => a.digest),
      original.artifacts.map((a) => a.digest),
    );
    assert.deepEqual(await ourContainers(since), [], 'a cache hit starts no container');

    const [status] = await f.github.waitFor(statusesFor(second), 1);
    assert.equal(stateOf(status as RecordedRequest), 'success');
    assert.match((status?.body as { description: string } | undefined)?.description ?? '', new RegExp(`build ${original.id}`));
  });

  test('a tag pushed on an already built commit is a cache hit', async () => {
    const built = (await f.builds()).find((b) => b.ref === 'refs/heads/main' && b.state === 'success' && !b.cached);
    assert.ok(built);
    const since = await nextWholeSecond();
    await push('refs/tags/v1.0', built.sha);
    const tag = await f.waitForBuild((b) => b.ref === 'refs/tags/v1.0');
    assert.equal(tag.state, 'success');
    assert.equal(tag.cached, true);
    assert.equal(tag.sourceBuildId, built.id);
    assert.deepEqual(await ourContainers(since), []);
  });

  test('explains a miss: which input differed from the nearest earlier build', async () => {
    const sha = await f.repo.commit({ 'message.txt': 'a new version\n' }, 'new content');
    await push('refs/heads/main', sha);
    const build = await f.waitForBuild((b) => b.sha === sha);
    assert.equal(build.cached, false);
    const previous = (await f.builds()).filter((b) => b.definition === build.definition && b.id < build.id && b.cacheKey !== null).at(0);
    assert.deepEqual(build.cacheMiss, { comparedWith: previous?.id ?? null, differs: ['tree'], forced: false });
  });

  test('two identical requests in flight share one container; the second is coalesced', async () => {
    const a = await f.repo.commit({ 'message.txt': 'coalesced version\n' }, 'for the slow build');
    const b = await f.repo.commitEmpty('same tree, another commit');
    const since = await nextWholeSecond();
    await Promise.all([push('refs/heads/slow', a), push('refs/heads/slow', b)]);
    const [builtA, builtB] = await Promise.all([
      f.waitForBuild((x) => x.sha === a && x.ref === 'refs/heads/slow'),
      f.waitForBuild((x) => x.sha === b && x.ref === 'refs/heads/slow'),
    ]);
    const leader = builtA.coalesced ? builtB : builtA;
    const follower = builtA.coalesced ? builtA : builtB;
    assert.equal(leader.coalesced, false);
    assert.equal(follower.coalesced, true);
    assert.equal(follower.sourceBuildId, leader.id);
    assert.equal(leader.state, 'success');
    assert.equal(follower.state, 'success');
    assert.deepEqual(follower.artifacts, leader.artifacts);
    assert.deepEqual(await ourContainers(since), [leader.id], "exactly one container, the leader's");
    for (const sha of [a, b]) {
      const statuses = await f.github.waitFor(statusesFor(sha), 2);
      assert.deepEqual(statuses.map(stateOf), ['pending', 'success'], `statuses of ${sha}`);
    }
  });

  test('a forced request runs even when an identical build succeeded', async () => {
    const sha = f.repo.head as string;
    const since = await nextWholeSecond();
    const result = await f.server.coordinator.submit({
      owner: 'acme',
      repo: 'widget',
      ref: 'refs/heads/slow',
      sha,
      cloneUrl: f.cloneUrl,
      defaultBranch: 'main',
      deliveryId: null,
      force: true,
    });
    const id = result.builds[0]?.id;
    const forced = await f.waitForBuild((x) => x.id === id);
    assert.equal(forced.cached, false);
    assert.equal(forced.state, 'success');
    assert.equal(forced.cacheMiss?.forced, true);
    assert.deepEqual(await ourContainers(since), [forced.id]);
  });

  test('a failed build is never a cache hit', async () => {
    const first = await f.repo.commit({ 'fail-marker.txt': '1\n' }, 'fail');
    await push('refs/heads/fails', first);
    const failed = await f.waitForBuild((x) => x.sha === first && x.ref === 'refs/heads/fails');
    assert.equal(failed.state, 'failure');
    const again = await f.repo.commitEmpty('same tree as the failure');
    await push('refs/heads/fails', again);
    const retried = await f.waitForBuild((x) => x.sha === again && x.ref === 'refs/heads/fails');
    assert.equal(retried.cached, false);
    assert.equal(retried.cacheKey, failed.cacheKey);
    assert.equal(retried.state, 'failure');
    assert.equal(retried.exitCode, 3);
  });
  test('a build whose payload states another tree than its commit has ends in error', async () => {
    const failing = (await f.builds()).find((b) => b.state === 'failure');
    assert.ok(failing?.cacheInputs, 'needs a build whose tree is in the mirror but never succeeded');
    const sha = await f.repo.commit({ 'message.txt': 'the real tree\n' }, 'real tree');
    const payload = pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/fails', sha, tree: failing.cacheInputs.tree, cloneUrl: f.cloneUrl });
    assert.equal((await deliver(f.server.url, { event: 'push', secret: f.secret, payload })).status, 202);
    const build = await f.waitForBuild((b) => b.sha === sha);
    assert.equal(build.state, 'error');
    assert.match(build.description ?? '', /as its push payload said/);
  });
});
