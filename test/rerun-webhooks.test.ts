import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import type { BuildView } from '../src/http/build-view.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, examplePayloads, pushPayload } from './support/webhook-delivery.js';

const PASSES = 'autobuilder/rerun-passes';
const FAILS = 'autobuilder/rerun-fails';

/** GitHub's example `event` payload of `action`, with its repository rewritten to acme/`repo` at `cloneUrl`. */
function example(event: 'check_run' | 'check_suite', action: string, input: { repo?: string; cloneUrl: string }): Record<string, unknown> {
  const payload = examplePayloads(event).find((p) => p['action'] === action);
  assert.ok(payload, `the examples hold a ${event} ${action}`);
  const repo = input.repo ?? 'widget';
  Object.assign(payload['repository'] as Record<string, unknown>, {
    name: repo,
    full_name: `acme/${repo}`,
    clone_url: input.cloneUrl,
    html_url: `https://github.com/acme/${repo}`,
    default_branch: 'main',
  });
  return payload;
}

/** The example check run `action` (rerequested, requested_action, created) rewritten to name `externalId` at `sha`. */
function checkRunPayload(action: string, input: { externalId: string; sha: string; cloneUrl: string; repo?: string; identifier?: string }) {
  const payload = example('check_run', action, input);
  Object.assign(payload['check_run'] as Record<string, unknown>, { external_id: input.externalId, head_sha: input.sha, name: 'autobuilder/x' });
  if (input.identifier !== undefined) payload['requested_action'] = { identifier: input.identifier };
  return payload;
}

describe('re-run webhooks: check_run and check_suite rebuild, forced', () => {
  let f: FixtureServer;
  let sha: string;
  let passed: BuildView;
  let failed: BuildView;

  const builds = async (context: string): Promise<BuildView[]> => (await f.builds()).filter((b) => b.sha === sha && b.context === context);
  /** The finished build of `context` at `sha` that is none of `known`. */
  const newBuild = (context: string, known: readonly BuildView[]) =>
    f.waitForBuild((b) => b.sha === sha && b.context === context && !known.some((k) => k.id === b.id));
  const send = (event: string, payload: unknown, deliveryId?: string) =>
    deliver(f.server.url, { event, payload, secret: f.secret, ...(deliveryId === undefined ? {} : { deliveryId }) });

  /** Asserts `build` ran a container of its own: not a cache hit, not joined to another build, forced. */
  const assertRan = (build: BuildView) => {
    assert.equal(build.cached, false, `${build.id} was a cache hit: ${build.description ?? ''}`);
    assert.equal(build.coalesced, false);
    assert.equal(build.sourceBuildId, null);
    assert.notEqual(build.startedAt, null);
    assert.equal(build.cacheMiss?.forced, true);
  };

  before(async () => {
    f = await startFixtureServer('rerun');
    // a commit of its own: its first builds run rather than hit the cache of another test's
    sha = await f.repo.commit({ 'rerun.txt': `re-run ${randomUUID()}\n` }, 'a commit to re-run');
    const response = await send('push', pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/rerun/one', sha, cloneUrl: f.cloneUrl }));
    assert.equal(response.status, 202, JSON.stringify(response.body));
    passed = await f.waitForBuild((b) => b.sha === sha && b.context === PASSES);
    failed = await f.waitForBuild((b) => b.sha === sha && b.context === FAILS);
  });
  after(async () => {
    await f.close();
    // the fixture's data (snapshots included) goes with it
    await rm(f.dir, { recursive: true, force: true }).catch(() => undefined);
  });

  test('the commit was built once per context: one success, one failure', () => {
    assert.equal(passed.state, 'success', passed.description ?? '');
    assert.equal(failed.state, 'failure', failed.description ?? '');
  });

  test('check_run rerequested of a failed build makes a new build of the same commit and context that runs', async () => {
    const before = await f.builds();
    const response = await send('check_run', checkRunPayload('rerequested', { externalId: failed.id, sha, cloneUrl: f.cloneUrl }));
    assert.equal(response.status, 202, JSON.stringify(response.body));
    assert.deepEqual((response.body as { rebuilds: string[] }).rebuilds, [failed.id]);
    const rebuilt = await newBuild(FAILS, before);
    assert.equal(rebuilt.ref, 'refs/heads/rerun/one');
    assert.equal(rebuilt.repo, 'acme/widget');
    assert.equal(rebuilt.state, 'failure');
    assert.equal(rebuilt.exitCode, 3);
    assert.equal(rebuilt.deliveryId, response.deliveryId);
    assertRan(rebuilt);
    const log = await (await fetch(rebuilt.logUrl)).text();
    assert.match(log, /about to fail/);
    // only the re-run context was built again
    assert.equal((await builds(PASSES)).length, 1);
  });

  test('a redelivery of the same re-run builds nothing more', async () => {
    const before = await builds(FAILS);
    const deliveryId = randomUUID();
    const payload = checkRunPayload('rerequested', { externalId: failed.id, sha, cloneUrl: f.cloneUrl });
    assert.equal((await send('check_run', payload, deliveryId)).status, 202);
    await newBuild(FAILS, before);
    const again = await send('check_run', payload, deliveryId);
    assert.equal(again.status, 200);
    assert.equal((again.body as { duplicate?: boolean }).duplicate, true);
    await f.server.coordinator.idle();
    assert.equal((await builds(FAILS)).length, before.length + 1);
  });

  test('the "Rebuild without cache" button rebuilds a successful build in a container instead of answering from the cache', async () => {
    const before = await f.builds();
    const payload = checkRunPayload('requested_action', { externalId: passed.id, sha, cloneUrl: f.cloneUrl, identifier: 'rebuild-no-cache' });
    const response = await send('check_run', payload);
    assert.equal(response.status, 202, JSON.stringify(response.body));
    const rebuilt = await newBuild(PASSES, before);
    assert.equal(rebuilt.state, 'success', rebuilt.description ?? '');
    assertRan(rebuilt);
    assert.match(await (await fetch(rebuilt.logUrl)).text(), new RegExp(`build of ${sha} on refs/heads/rerun/one`));
    assert.equal(rebuilt.artifacts[0]?.digest, passed.artifacts[0]?.digest);
  });

  test('an external_id that is no build of the repository is answered with the reason and builds nothing', async () => {
    const before = await f.builds();
    const cases = [
      { externalId: 'zzzzzzzz-00000000', reason: /external_id "zzzzzzzz-00000000" is no build of acme\/widget/ },
      { externalId: '', reason: /external_id "" is no build of acme\/widget/ },
      // a build of ours, named by a check run of another repository
      { externalId: failed.id, repo: 'gadget', reason: new RegExp(`external_id "${failed.id}" is no build of acme/gadget`) },
    ];
    for (const { externalId, repo, reason } of cases) {
      const payload = checkRunPayload('rerequested', { externalId, sha, cloneUrl: f.cloneUrl, ...(repo === undefined ? {} : { repo }) });
      const response = await send('check_run', payload);
      assert.equal(response.status, 200, JSON.stringify(response.body));
      const body = response.body as { ignored: boolean; reason: string };
      assert.equal(body.ignored, true);
      assert.match(body.reason, reason);
    }
    // another app's action button, and check runs created or completed
    const other = await send('check_run', checkRunPayload('requested_action', { externalId: failed.id, sha, cloneUrl: f.cloneUrl, identifier: 'lgtm' }));
    assert.match((other.body as { reason: string }).reason, /"lgtm" is not one of autobuilder's/);
    for (const action of ['created', 'completed']) {
      const response = await send('check_run', checkRunPayload(action, { externalId: failed.id, sha, cloneUrl: f.cloneUrl }));
      assert.equal(response.status, 200);
      assert.match((response.body as { reason: string }).reason, new RegExp(`check_run action "${action}" does not trigger builds`));
    }
    await f.server.coordinator.idle();
    assert.deepEqual(
      (await f.builds()).map((b) => b.id),
      before.map((b) => b.id),
    );
  });

  test('check_suite rerequested rebuilds the latest build of each context of its head sha, forced', async () => {
    const before = await f.builds();
    const payload = example('check_suite', 'rerequested', { cloneUrl: f.cloneUrl });
    Object.assign(payload['check_suite'] as Record<string, unknown>, { head_sha: sha, head_branch: 'rerun/one' });
    const response = await send('check_suite', payload);
    assert.equal(response.status, 202, JSON.stringify(response.body));
    const latest = (context: string) => before.find((b) => b.sha === sha && b.context === context)?.id;
    assert.deepEqual(new Set((response.body as { rebuilds: string[] }).rebuilds), new Set([latest(PASSES), latest(FAILS)]));
    const [passes, fails] = await Promise.all([newBuild(PASSES, before), newBuild(FAILS, before)]);
    assert.equal(passes.state, 'success');
    assert.equal(fails.state, 'failure');
    for (const build of [passes, fails]) {
      assertRan(build);
      assert.equal(build.ref, 'refs/heads/rerun/one');
    }

    const elsewhere = example('check_suite', 'rerequested', { cloneUrl: f.cloneUrl });
    Object.assign(elsewhere['check_suite'] as Record<string, unknown>, { head_sha: '0123456789abcdef0123456789abcdef01234567' });
    const none = await send('check_suite', elsewhere);
    assert.equal(none.status, 200);
    assert.match((none.body as { reason: string }).reason, /no build of acme\/widget at 0123456789abcdef0123456789abcdef01234567/);
  });
});
