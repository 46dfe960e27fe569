import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Build } from '../builds/build.js';
import type { BuildRequest } from '../builds/build-request.js';
import { buildRecord } from '../../test/support/build-record.js';
import { makeTestDir } from '../../test/support/data-dir.js';
import type { BuildStore } from '../store/build-store.js';
import { createSqliteBuildStore } from '../store/sqlite-build-store.js';
import type { RebuildTarget } from './to-build-request.js';
import { toRebuildRequests } from './to-rebuild-requests.js';

const SHA = '1'.repeat(40);
const OTHER_SHA = '2'.repeat(40);
const APP_ID = 4242;

const branchRequest: BuildRequest = {
  owner: 'acme',
  repo: 'widget',
  ref: 'refs/heads/main',
  sha: SHA,
  tree: '3'.repeat(40),
  cloneUrl: 'https://github.com/acme/widget.git',
  defaultBranch: 'main',
  deliveryId: 'push-delivery',
};
const pullRequest: BuildRequest = {
  ...branchRequest,
  ref: 'refs/pull/7/head',
  tree: null,
  definitionsRef: 'refs/heads/main',
  pullRequest: 7,
  fromFork: false,
  deliveryId: 'pr-delivery',
};

function build(id: string, changes: Partial<Build>): Build {
  return buildRecord({ id, sha: SHA, queuedAt: '2024-01-01T00:00:00.000Z', ...changes });
}

const checkRun = (externalId: string, changes: Partial<Extract<RebuildTarget, { kind: 'check_run' }>> = {}): RebuildTarget => ({
  kind: 'check_run',
  owner: 'acme',
  repo: 'widget',
  appId: APP_ID,
  trigger: 'rerequested',
  checkRunId: 1,
  externalId,
  headSha: SHA,
  ...changes,
});
const checkSuite = (changes: Partial<Extract<RebuildTarget, { kind: 'check_suite' }>> = {}): RebuildTarget => ({
  kind: 'check_suite',
  owner: 'acme',
  repo: 'widget',
  appId: APP_ID,
  trigger: 'rerequested',
  headSha: SHA,
  ...changes,
});

describe('toRebuildRequests', () => {
  let dir: string;
  let store: BuildStore;
  const resolve = (target: RebuildTarget, appId: number | null = APP_ID) => toRebuildRequests(target, { store, appId, deliveryId: 'rerun-delivery' });

  before(async () => {
    dir = await makeTestDir('rebuild-requests');
    store = createSqliteBuildStore({ path: join(dir, 'autobuilder.db') });
    // main at SHA: a success and a failure of two definitions, the failure built twice
    store.insertForRequest([build('m0000001-00000001', { definition: 'build', context: 'autobuilder/build' })], branchRequest);
    store.insertForRequest([build('m0000002-00000002', { definition: 'fails', context: 'autobuilder/fails', state: 'failure', exitCode: 3 })], branchRequest);
    store.insertForRequest([build('m0000003-00000003', { definition: 'fails', context: 'autobuilder/fails', state: 'failure', exitCode: 3 })], branchRequest);
    // the same commit as pull request 7: a context of its own
    store.insertForRequest([build('m0000004-00000004', { ref: 'refs/pull/7/head', definition: 'pr', context: 'autobuilder/pr' })], pullRequest);
    // another commit, and another repository at the same commit
    store.insertForRequest([build('m0000005-00000005', { sha: OTHER_SHA })], { ...branchRequest, sha: OTHER_SHA });
    store.insertForRequest([build('m0000006-00000006', { repo: 'evil/widget' })], { ...branchRequest, owner: 'evil' });
    // a build whose request was not kept
    store.insert(build('m0000007-00000007', { sha: '7'.repeat(40) }));
    // a tag's create event: its request has no sha
    store.insertForRequest([build('m0000008-00000008', { ref: 'refs/tags/v1', sha: '8'.repeat(40) })], { ...branchRequest, ref: 'refs/tags/v1', sha: null });
    await store.flush();
  });
  after(async () => {
    store.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('rebuilds the build a check run names: its request, forced, at its commit, of its definition only', () => {
    assert.deepEqual(resolve(checkRun('m0000002-00000002')), {
      kind: 'rebuild',
      requests: [
        {
          request: {
            owner: 'acme',
            repo: 'widget',
            ref: 'refs/heads/main',
            sha: SHA,
            cloneUrl: 'https://github.com/acme/widget.git',
            defaultBranch: 'main',
            deliveryId: 'rerun-delivery',
            force: true,
            definitions: ['fails'],
          },
          rebuilds: [store.get('m0000002-00000002')],
        },
      ],
    });
  });

  test("builds a tag's commit again at the sha its build had (its create event named none)", () => {
    const outcome = resolve(checkRun('m0000008-00000008', { headSha: '8'.repeat(40) }));
    assert.equal(outcome.kind, 'rebuild');
    assert.equal(outcome.requests[0]?.request.sha, '8'.repeat(40));
    assert.equal(outcome.requests[0].request.ref, 'refs/tags/v1');
  });

  test('ignores check runs of other GitHub Apps and, with no App configured, decides by external_id alone', () => {
    const other = resolve(checkRun('m0000001-00000001', { appId: 99 }));
    assert.deepEqual(other, { kind: 'ignored', reason: `the check run belongs to GitHub App 99, not to this one (${APP_ID})` });
    const none = resolve(checkSuite({ appId: null }));
    assert.equal(none.kind, 'ignored');
    assert.match(none.reason, /belongs to no GitHub App/);
    assert.equal(resolve(checkRun('m0000001-00000001', { appId: 99 }), null).kind, 'rebuild');
  });

  test('ignores an external_id that is no build of the repository, never building another repository', () => {
    for (const externalId of ['', 'm0000099-00000099', '../../etc/passwd', 'Robert"); DROP TABLE builds;--']) {
      const outcome = resolve(checkRun(externalId));
      assert.equal(outcome.kind, 'ignored', externalId);
      assert.match(outcome.reason, /is no build of acme\/widget/);
    }
    const foreign = resolve(checkRun('m0000006-00000006'));
    assert.deepEqual(foreign, { kind: 'ignored', reason: 'check run external_id "m0000006-00000006" is no build of acme/widget' });
    assert.equal(resolve(checkRun('m0000001-00000001', { owner: 'evil' })).kind, 'ignored');
  });

  test('ignores a check run on another commit than its build, and a build without a stored request', () => {
    assert.deepEqual(resolve(checkRun('m0000001-00000001', { headSha: OTHER_SHA })), {
      kind: 'ignored',
      reason: `check run is on commit ${OTHER_SHA}, build m0000001-00000001 built ${SHA}`,
    });
    assert.deepEqual(resolve(checkRun('m0000007-00000007', { headSha: null })), {
      kind: 'ignored',
      reason: 'build m0000007-00000007 has no stored request to build again',
    });
  });

  test("rebuilds the newest build of each context of a check suite's commit, one request per original request", () => {
    const outcome = resolve(checkSuite());
    assert.equal(outcome.kind, 'rebuild');
    assert.deepEqual(
      outcome.requests.map(({ request, rebuilds }) => ({
        ref: request.ref,
        deliveryId: request.deliveryId,
        definitions: request.definitions,
        force: request.force,
        rebuilds: rebuilds.map((b) => b.id),
      })),
      [
        // oldest context first: build, then fails (its newer build), then the pull request's
        {
          ref: 'refs/heads/main',
          deliveryId: 'rerun-delivery',
          definitions: ['build', 'fails'],
          force: true,
          rebuilds: ['m0000001-00000001', 'm0000003-00000003'],
        },
        { ref: 'refs/pull/7/head', deliveryId: 'rerun-delivery.2', definitions: ['pr'], force: true, rebuilds: ['m0000004-00000004'] },
      ],
    );
    assert.equal(outcome.requests[1]?.request.pullRequest, 7);
    assert.equal(outcome.requests[1].request.definitionsRef, 'refs/heads/main');
  });

  test('finds a build of the commit right after its insert, before any flush', () => {
    const sha = '4'.repeat(40);
    store.insertForRequest([build('m0000009-00000009', { sha })], { ...branchRequest, sha });
    const outcome = resolve(checkSuite({ headSha: sha }));
    assert.equal(outcome.kind, 'rebuild');
    assert.deepEqual(
      outcome.requests.flatMap((r) => r.rebuilds.map((b) => b.id)),
      ['m0000009-00000009'],
    );
  });

  test('ignores a check suite of a commit with no build in the repository', () => {
    assert.deepEqual(resolve(checkSuite({ headSha: '9'.repeat(40) })), {
      kind: 'ignored',
      reason: `no build of acme/widget at ${'9'.repeat(40)} to build again`,
    });
    assert.equal(resolve(checkSuite({ owner: 'nobody' })).kind, 'ignored');
  });
});
