import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { simpleGit, type SimpleGit } from 'simple-git';
import type { BuildView } from '../src/http/build-view.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import type { RecordedRequest } from './support/github-stand-in.js';
import { createPayload, deliver, pullRequestPayload, pushPayload } from './support/webhook-delivery.js';

const TOKEN = 'test-api-token';
const SECRET = 'deploy-s3cr3t-for-pull-requests';
const IDENTITY = ['-c', 'user.name=autobuilder test', '-c', 'user.email=test@autobuilder.invalid'];

const statusesFor = (sha: string) => (r: RecordedRequest) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === sha;
const stateOf = (r: RecordedRequest) => (r.body as { state: string }).state;

describe('pull requests and tags from create events', () => {
  let f: FixtureServer;
  let git: SimpleGit;

  before(async () => {
    f = await startFixtureServer('pull-requests', { jobConcurrency: 1, api: { token: TOKEN }, builds: { secretEnv: { DEPLOY_TOKEN: SECRET } } });
    git = simpleGit({ baseDir: f.repo.dir });
  });
  after(async () => {
    await f.close({ graceMs: 0 });
  });

  /**
   * Commits `files` on a branch of its own and points `refs/pull/<number>/head` at it, as
   * GitHub does in the base repository for every pull request (forks included); the branch
   * is then deleted, so that ref is the only way to the commit.
   */
  const pullRequestHead = async (number: number, files: Record<string, string>): Promise<string> => {
    const branch = `scratch/pr-${number}-${Date.now()}`;
    await git.raw(['checkout', '--quiet', '-b', branch]);
    const sha = await f.repo.commit(files, `pull request ${number}`);
    await git.raw(['update-ref', `refs/pull/${number}/head`, sha]);
    await git.raw(['checkout', '--quiet', 'main']);
    await git.raw(['branch', '--quiet', '-D', branch]);
    return sha;
  };
  const send = async (event: string, payload: Record<string, unknown>, expected = 202) => {
    const response = await deliver(f.server.url, { event, payload, secret: f.secret });
    assert.equal(response.status, expected, JSON.stringify(response.body));
    return response;
  };
  const pull = (input: Omit<Parameters<typeof pullRequestPayload>[0], 'owner' | 'repo' | 'cloneUrl'>) =>
    pullRequestPayload({ owner: 'acme', repo: 'widget', cloneUrl: f.cloneUrl, ...input });
  const push = (ref: string, sha: string) => pushPayload({ owner: 'acme', repo: 'widget', ref, sha, cloneUrl: f.cloneUrl });
  const logOf = async (build: BuildView) => (await fetch(build.logUrl)).text();
  /** Polls until a build matches (in any state). */
  const seen = async (match: (b: BuildView) => boolean): Promise<BuildView> => {
    for (let i = 0; i < 400; i++) {
      const found = (await f.builds()).find(match);
      if (found !== undefined) return found;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('no build matched');
  };
  /** Resolves once every accepted delivery was handed to the coordinator and marked processed. */
  const deliveriesHandled = async () => {
    for (let i = 0; i < 400 && f.server.store.unprocessedDeliveries().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(f.server.store.unprocessedDeliveries(), []);
  };

  test("synchronize builds the head sha as refs/pull/<n>/head with the base branch's definitions and posts its statuses on the head sha", async () => {
    // the head branch is named `slow`: its own definitions (slow.yaml) would make a build named `slow`
    const sha = await pullRequestHead(1, { 'message.txt': 'pull request 1\n' });
    await send('pull_request', pull({ action: 'synchronize', number: 1, head: 'slow', sha, base: 'main' }));
    const build = await f.waitForBuild((b) => b.sha === sha);
    assert.equal(build.state, 'success', build.description ?? '');
    assert.equal(build.ref, 'refs/pull/1/head');
    assert.equal(build.definition, 'autobuild/build.sh', "main.yaml's build, not the head branch's");
    assert.match(await logOf(build), /on refs\/pull\/1\/head/);
    const statuses = await f.github.waitFor(statusesFor(sha), 2);
    assert.deepEqual(statuses.map(stateOf), ['pending', 'success']);
    for (const status of statuses) {
      assert.deepEqual([status.params['owner'], status.params['repo']], ['acme', 'widget']);
      assert.equal((status.body as { context: string }).context, 'autobuilder/autobuild/build.sh');
    }
    assert.equal((await f.builds()).filter((b) => b.sha === sha).length, 1);
  });

  test('a pull request from a fork builds without secrets, in a fresh workspace, and shares no cache with trusted builds', async () => {
    // a trusted build of the `secrets` branch: the head of that lineage, built with the secret
    const trustedSha = await f.repo.commit({ 'message.txt': 'trusted\n' }, 'trusted');
    await send('push', push('refs/heads/secrets', trustedSha));
    const trusted = await f.waitForBuild((b) => b.sha === trustedSha);
    assert.equal(trusted.state, 'success', trusted.description ?? '');
    assert.match(await logOf(trusted), /token: \*\*\*/);

    // same repository: the secret (masked), and a snapshot of the default branch's last green workspace
    const ownSha = await pullRequestHead(2, { 'message.txt': 'own pull request\n' });
    await send('pull_request', pull({ action: 'opened', number: 2, head: 'topic', sha: ownSha, base: 'secrets', defaultBranch: 'secrets' }));
    const own = await f.waitForBuild((b) => b.sha === ownSha);
    assert.equal(own.state, 'success', own.description ?? '');
    const ownLog = await logOf(own);
    assert.match(ownLog, /token: \*\*\*/);
    assert.ok(!ownLog.includes(SECRET));
    assert.equal(own.parentBuildId, trusted.id);

    // a fork whose branch is named like the default branch: no secret, no trusted snapshot
    const forkSha = await pullRequestHead(3, { 'message.txt': 'from a fork\n' });
    await send(
      'pull_request',
      pull({ action: 'opened', number: 3, head: 'secrets', sha: forkSha, base: 'secrets', defaultBranch: 'secrets', fork: 'mallory/widget' }),
    );
    const fork = await f.waitForBuild((b) => b.sha === forkSha);
    assert.equal(fork.state, 'success', fork.description ?? '');
    assert.equal(fork.ref, 'refs/pull/3/head');
    assert.match(await logOf(fork), /token: <none>/);
    assert.equal(fork.incremental, false);
    assert.equal(fork.parentBuildId, null);

    // the same commit pushed to the branch later: identical inputs, yet built again, with the secret
    await send('push', push('refs/heads/secrets', forkSha));
    const again = await f.waitForBuild((b) => b.sha === forkSha && b.ref === 'refs/heads/secrets');
    assert.equal(again.state, 'success', again.description ?? '');
    assert.equal(again.cached, false, "a fork's result is never a trusted build's cache hit");
    assert.equal(again.coalesced, false);
    assert.match(await logOf(again), /token: \*\*\*/);
    assert.equal(again.parentBuildId, trusted.id, "the branch's lineage head is still the trusted build");
  });

  test('a closed pull request cancels its waiting build', async () => {
    const blockerSha = await f.repo.commitEmpty(`holds the only slot ${Date.now()}`);
    await send('push', push('refs/heads/long', blockerSha));
    const blocker = await seen((b) => b.sha === blockerSha && b.state === 'running');

    const sha = await pullRequestHead(4, { 'message.txt': 'closed before it ran\n' });
    await send('pull_request', pull({ action: 'opened', number: 4, head: 'topic-4', sha, base: 'slow' }));
    const queued = await seen((b) => b.sha === sha && b.ref === 'refs/pull/4/head');
    for (let i = 0; i < 400; i++) {
      const queue = (await (await fetch(`${f.server.url}/api/queue`)).json()) as { waiting: { buildId: string }[] };
      if (queue.waiting.some((w) => w.buildId === queued.id)) break;
      await new Promise((r) => setTimeout(r, 50));
    }

    const response = await send('pull_request', pull({ action: 'closed', number: 4, head: 'topic-4', sha, base: 'slow' }));
    assert.equal((response.body as { reason: string }).reason, 'pull request #4 was closed');
    const cancelled = await f.waitForBuild((b) => b.id === queued.id);
    assert.equal(cancelled.state, 'cancelled');
    assert.equal(cancelled.description, 'pull request #4 was closed');
    assert.equal(cancelled.startedAt, null, 'it never ran');
    assert.deepEqual((await f.github.waitFor(statusesFor(sha), 2)).map(stateOf), ['pending', 'error']);

    const stillRunning = (await f.builds()).find((b) => b.id === blocker.id);
    assert.equal(stillRunning?.state, 'running', 'builds of other refs are left alone');
    const stop = await fetch(`${f.server.url}/api/builds/${blocker.id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(stop.status, 200);
  });

  test('a pull request closed while its build is still being decided: the build is cancelled as it reaches the queue; a reopen builds again', async () => {
    const sha = await pullRequestHead(5, { 'message.txt': 'closed while deciding\n' });
    const request = {
      owner: 'acme',
      repo: 'widget',
      ref: 'refs/pull/5/head',
      definitionsRef: 'refs/heads/slow',
      pullRequest: 5,
      fromFork: false,
      sha,
      cloneUrl: f.cloneUrl,
      defaultBranch: 'main',
      deliveryId: null,
    };
    // the close comes before the build is even stored: nothing waits yet
    const deciding = f.server.coordinator.submit(request);
    assert.deepEqual(await f.server.coordinator.cancelPullRequest({ owner: 'acme', repo: 'widget', pullRequest: 5 }, 'pull request #5 was closed'), []);
    const [build] = (await deciding).builds;
    const ended = await f.waitForBuild((b) => b.id === build?.id);
    assert.equal(ended.state, 'cancelled');
    assert.equal(ended.description, 'pull request #5 was closed');
    assert.equal(ended.startedAt, null, 'it never ran');

    const [reopened] = (await f.server.coordinator.submit(request)).builds;
    assert.equal((await f.waitForBuild((b) => b.id === reopened?.id)).state, 'success');
  });

  test('a tag push, then the create event of the same tag, make exactly one build; a manual rebuild still makes another', async () => {
    const sha = await f.repo.commit({ 'message.txt': 'release 2.0.0\n' }, 'release 2.0.0');
    await git.raw(['tag', 'v2.0.0', sha]);
    await Promise.all([
      send('push', push('refs/tags/v2.0.0', sha)),
      send('create', createPayload({ owner: 'acme', repo: 'widget', tag: 'v2.0.0', cloneUrl: f.cloneUrl })),
    ]);
    const build = await f.waitForBuild((b) => b.ref === 'refs/tags/v2.0.0');
    await deliveriesHandled();
    const builds = (await f.builds()).filter((b) => b.ref === 'refs/tags/v2.0.0');
    assert.deepEqual(
      builds.map((b) => b.id),
      [build.id],
    );
    assert.equal(build.sha, sha);
    assert.equal(build.state, 'success', build.description ?? '');

    const rebuild = await fetch(`${f.server.url}/api/builds/${build.id}/rebuild`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(rebuild.status, 202);
    const [rebuilt] = ((await rebuild.json()) as { builds: BuildView[] }).builds;
    assert.notEqual(rebuilt?.id, build.id);
    assert.equal((await f.waitForBuild((b) => b.id === rebuilt?.id)).state, 'success');
  });

  test('the create event of an annotated tag, then its push, make exactly one build of the tagged commit', async () => {
    const sha = await f.repo.commit({ 'message.txt': 'release 2.1.0\n' }, 'release 2.1.0');
    await git.raw([...IDENTITY, 'tag', '--annotate', '--message', 'release 2.1.0', 'v2.1.0', sha]);
    const tagObject = (await git.revparse(['refs/tags/v2.1.0'])).trim();
    assert.notEqual(tagObject, sha);
    // GitHub's push of an annotated tag: `after` is the tag object, head_commit the commit
    const tagPush = { ...push('refs/tags/v2.1.0', sha), after: tagObject };
    await send('create', createPayload({ owner: 'acme', repo: 'widget', tag: 'v2.1.0', cloneUrl: f.cloneUrl }));
    await send('push', tagPush);
    const build = await f.waitForBuild((b) => b.ref === 'refs/tags/v2.1.0');
    await deliveriesHandled();
    const builds = (await f.builds()).filter((b) => b.ref === 'refs/tags/v2.1.0');
    assert.deepEqual(
      builds.map((b) => b.id),
      [build.id],
    );
    assert.equal(build.sha, sha, 'the commit, not the tag object');
    assert.equal(build.state, 'success', build.description ?? '');
    assert.deepEqual((await f.github.waitFor(statusesFor(sha), 2)).map(stateOf), ['pending', 'success']);
  });

  test('the create event of a tag no longer in the repository builds nothing', async () => {
    await send('create', createPayload({ owner: 'acme', repo: 'widget', tag: 'v9.9.9-gone', cloneUrl: f.cloneUrl }));
    await deliveriesHandled();
    assert.deepEqual(
      (await f.builds()).filter((b) => b.ref === 'refs/tags/v9.9.9-gone'),
      [],
    );
  });
});
