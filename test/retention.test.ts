import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createBuildId } from '../src/builds/coordinator.js';
import type { BuildView } from '../src/http/build-view.js';
import { createBtrfsDriver, toPathSegment } from '../src/snapshots/index.js';
import { createSqliteBuildStore } from '../src/store/index.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

describe('retention, garbage collection and crash recovery', () => {
  let f: FixtureServer;
  const dataDir = () => join(f.dir, 'data');
  const workspaceOf = (b: BuildView) => join(dataDir(), 'workspaces', 'acme', 'widget', toPathSegment(b.definition), toPathSegment(b.id));
  const status = async (url: string) => (await fetch(url)).status;

  before(async () => {
    f = await startFixtureServer('retention', { retention: { keepPerBranch: 2, intervalSeconds: 3600, artifactGraceSeconds: 0 } });
  });
  after(async () => {
    await f?.close();
  });

  const build = async (ref: string, files: Record<string, string>, remove: string[] = []): Promise<BuildView> => {
    for (const path of remove) await rm(join(f.repo.dir, path), { force: true });
    const sha = await f.repo.commit(files, `change on ${ref}`);
    const response = await deliver(f.server.url, { event: 'push', secret: f.secret, payload: pushPayload({ owner: 'acme', repo: 'widget', ref, sha, cloneUrl: f.cloneUrl }) });
    assert.equal(response.status, 202);
    return f.waitForBuild((b) => b.sha === sha && b.ref === ref);
  };

  let a: BuildView;

  test('a crash between a build and its promotion leaves the previous head, and the leftovers go at start', async () => {
    a = await build('refs/heads/main', { 'message.txt': 'shared\n' });
    assert.equal(a.state, 'success');
    await f.server.close();

    // What a crash mid-build leaves: a build record still running and its half-made workspace.
    const store = createSqliteBuildStore({ path: join(dataDir(), 'autobuilder.db') });
    const crashed = { ...(store.get(a.id) as NonNullable<ReturnType<typeof store.get>>), id: createBuildId(), state: 'running' as const, artifacts: [], finishedAt: null };
    store.insert(crashed);
    store.close();
    const crashedWorkspace = workspaceOf({ ...a, id: crashed.id });
    await createBtrfsDriver().snapshot(workspaceOf(a), crashedWorkspace);

    await f.restart();
    assert.equal(existsSync(crashedWorkspace), false, 'the half-made workspace is removed at start');
    const recovered = (await (await fetch(`${f.server.url}/api/builds/${crashed.id}`)).json()) as BuildView;
    assert.equal(recovered.state, 'error');
    assert.match(recovered.description ?? '', /restarted/);
    assert.ok(existsSync(workspaceOf(a)), 'the lineage head survives');

    const next = await build('refs/heads/main', { 'after-crash.txt': '1\n' });
    assert.equal(next.parentBuildId, a.id, 'the next build starts from the previous head');
    a = next;
  });

  test('keeps a lineage head even when newer failures push it past the limit', async () => {
    const failedB = await build('refs/heads/main', {}, ['message.txt']);
    const failedC = await build('refs/heads/main', { 'other.txt': 'c\n' });
    assert.equal(failedB.state, 'failure');
    assert.equal(failedC.state, 'failure');
    await f.server.retention.run();
    assert.equal(await status(`${f.server.url}/api/builds/${a.id}`), 200, 'the head build is kept');
    assert.ok(existsSync(workspaceOf(a)));
  });

  test('deletes old builds with their logs and workspaces, and only unreferenced artifacts', async () => {
    const headBefore = a;
    const sharedDigest = (await fetch(`${f.server.url}/api/builds/${headBefore.id}`).then((r) => r.json() as Promise<BuildView>)).artifacts[0]?.digest;
    assert.ok(sharedDigest);
    // another branch produces the same artifact bytes from another tree: it references the same digest
    const feature = await build('refs/heads/feature/incremental', { 'message.txt': 'shared\n', 'feature.txt': 'x\n' });
    assert.equal(feature.artifacts[0]?.digest, sharedDigest);
    const d = await build('refs/heads/main', { 'message.txt': 'only d\n' });
    const e = await build('refs/heads/main', { 'message.txt': 'only e\n' });
    const g = await build('refs/heads/main', { 'message.txt': 'only g\n' });
    const before = (await f.builds()).filter((b) => b.ref === 'refs/heads/main');

    const report = await f.server.retention.run();
    const after = (await f.builds()).filter((b) => b.ref === 'refs/heads/main');
    assert.deepEqual(after.map((b) => b.id).sort(), [e.id, g.id].sort(), 'the newest two of main are kept');
    assert.equal(report.buildsDeleted, before.length - 2);
    for (const gone of before.filter((b) => b.id !== e.id && b.id !== g.id)) {
      assert.equal(await status(`${f.server.url}/api/builds/${gone.id}`), 404);
      assert.equal(existsSync(join(dataDir(), 'logs', `${gone.id}.log`)), false);
      assert.equal(existsSync(workspaceOf(gone)), false, `workspace of ${gone.id}`);
    }
    assert.equal(await status(`${f.server.url}/api/artifacts/${d.artifacts[0]?.digest}`), 404, "d's artifact is referenced by no kept build");
    assert.equal(await status(`${f.server.url}/api/artifacts/${sharedDigest}`), 200, 'an artifact a kept build references survives');
    assert.equal(await status(`${f.server.url}/api/artifacts/${g.artifacts[0]?.digest}`), 200);
    assert.ok(report.artifactsDeleted >= 1);
    assert.equal(await status(`${f.server.url}/api/builds/${feature.id}`), 200);

    const next = await build('refs/heads/main', { 'message.txt': 'after gc\n' });
    assert.equal(next.parentBuildId, g.id, 'the head moved on to the newest green build');
  });
});
