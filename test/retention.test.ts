import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { createArtifactStore } from '../src/artifacts/index.js';
import type { Build } from '../src/builds/build.js';
import { createBuildLogs } from '../src/builds/build-log.js';
import { createBuildId } from '../src/builds/coordinator.js';
import { createRetention } from '../src/builds/retention.js';
import type { CommitStatusPublisher } from '../src/github/commit-statuses.js';
import type { BuildView } from '../src/http/build-view.js';
import { createLogger } from '../src/logger.js';
import { createBtrfsDriver, createWorkspaces, toPathSegment, type SnapshotDriver } from '../src/snapshots/index.js';
import { createSqliteBuildStore } from '../src/store/index.js';
import { buildRecord } from './support/build-record.js';
import { makeTestDir } from './support/data-dir.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { buildSubvolumeTool } from './support/subvolume-tool.js';
import { deliver, pullRequestPayload, pushPayload } from './support/webhook-delivery.js';

const exec = promisify(execFile);
/** A subvolume's root directory has inode number 256 (BTRFS_FIRST_FREE_OBJECTID). */
const SUBVOLUME_ROOT_INODE = 256;

describe('retention, garbage collection and crash recovery', () => {
  let f: FixtureServer;
  const dataDir = () => join(f.dir, 'data');
  const workspaceOf = (b: BuildView) => join(dataDir(), 'workspaces', 'acme', 'widget', toPathSegment(b.definition), toPathSegment(b.id));
  const status = async (url: string) => (await fetch(url)).status;

  before(async () => {
    f = await startFixtureServer('retention', { retention: { keepPerBranch: 2, intervalSeconds: 3600, artifactGraceSeconds: 0 } });
  });
  after(async () => {
    await f.close();
  });

  const build = async (ref: string, files: Record<string, string>, remove: string[] = []): Promise<BuildView> => {
    for (const path of remove) await rm(join(f.repo.dir, path), { force: true });
    const sha = await f.repo.commit(files, `change on ${ref}`);
    const response = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref, sha, cloneUrl: f.cloneUrl }),
    });
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
    const crashed = {
      ...(store.get(a.id) as NonNullable<ReturnType<typeof store.get>>),
      id: createBuildId(),
      state: 'running' as const,
      artifacts: [],
      finishedAt: null,
    };
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

describe('workspaces a build made hard to delete', () => {
  let f: FixtureServer;
  let tool: string | null;
  const dataDir = () => join(f.dir, 'data');
  const workspaceOf = (b: Pick<BuildView, 'id' | 'definition'>) =>
    join(dataDir(), 'workspaces', 'acme', 'widget', toPathSegment(b.definition), toPathSegment(b.id));
  /** Paths made immutable by a test: made mutable again whatever happens. */
  const immutable: string[] = [];

  before(async () => {
    f = await startFixtureServer('retention-hostile', { retention: { keepPerBranch: 2, intervalSeconds: 3600, artifactGraceSeconds: 0 } });
    tool = await buildSubvolumeTool(f.dir);
  });
  after(async () => {
    for (const path of immutable) await exec('chattr', ['-i', path]).catch(() => undefined);
    await f.close();
  });

  test('a build container with every capability dropped makes a subvolume in its workspace, and retention still deletes that workspace', async (t) => {
    if (tool === null) return t.skip('gcc -static cannot build the mksubvol tool on this host');
    await copyFile(tool, join(f.repo.dir, 'mksubvol'));
    await chmod(join(f.repo.dir, 'mksubvol'), 0o755);
    const ref = 'refs/heads/nested-subvolume/one';
    const built: BuildView[] = [];
    for (const n of [1, 2, 3]) {
      const sha = await f.repo.commit({ 'message.txt': `nested ${n}\n` }, `nested subvolume ${n}`);
      const response = await deliver(f.server.url, {
        event: 'push',
        secret: f.secret,
        payload: pushPayload({ owner: 'acme', repo: 'widget', ref, sha, cloneUrl: f.cloneUrl }),
      });
      assert.equal(response.status, 202);
      const b = await f.waitForBuild((x) => x.sha === sha && x.ref === ref);
      assert.equal(b.state, 'success', b.description ?? '');
      built.push(b);
    }
    const oldest = built[0] as BuildView;
    const nested = join(workspaceOf(oldest), 'src', `subvolume-of-${oldest.id}`);
    assert.equal((await stat(nested)).ino, SUBVOLUME_ROOT_INODE, 'the build made a real subvolume');

    const report = await f.server.retention.run();
    assert.equal(report.failures, 0);
    assert.equal(existsSync(workspaceOf(oldest)), false, 'the workspace with its nested subvolume is gone');
    assert.equal((await fetch(`${f.server.url}/api/builds/${oldest.id}`)).status, 404);
  });

  test('the server starts after a crash left a workspace with a nested subvolume and one it cannot delete', async () => {
    const sha = await f.repo.commit({ 'message.txt': 'main\n' }, 'main');
    await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl: f.cloneUrl }),
    });
    const a = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/main');
    assert.equal(a.state, 'success');
    await f.server.close();

    // What kill -9 during two builds leaves: records still running, their workspaces half-made.
    const store = createSqliteBuildStore({ path: join(dataDir(), 'autobuilder.db') });
    const crashed = [createBuildId(), createBuildId()].map((id) => ({
      ...(store.get(a.id) as Build),
      id,
      state: 'running' as const,
      artifacts: [],
      finishedAt: null,
    }));
    for (const build of crashed) store.insert(build);
    store.close();
    const [withNested, undeletable] = crashed.map((b) => workspaceOf(b)) as [string, string];
    const driver = createBtrfsDriver();
    for (const path of [withNested, undeletable]) {
      await driver.snapshot(workspaceOf(a), path);
      await exec('btrfs', ['subvolume', 'create', join(path, 'nested')]);
      await writeFile(join(path, 'nested', 'f'), 'x');
    }
    // an immutable workspace root cannot be unlinked, not even by root (the kind of failure an
    // admin's chattr, a read-only remount or an I/O error gives)
    await exec('chattr', ['+i', undeletable]);
    immutable.push(undeletable);

    await f.restart();
    assert.equal(existsSync(withNested), false, 'the workspace with a nested subvolume is removed at start');
    assert.ok(existsSync(undeletable), 'the workspace that cannot be deleted is skipped');
    for (const build of crashed) {
      const view = (await (await fetch(`${f.server.url}/api/builds/${build.id}`)).json()) as BuildView;
      assert.equal(view.state, 'error', 'every interrupted build is ended');
    }
    const next = await f.repo.commit({ 'message.txt': 'after restart\n' }, 'after restart');
    await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha: next, cloneUrl: f.cloneUrl }),
    });
    assert.equal((await f.waitForBuild((b) => b.sha === next)).state, 'success', 'the restarted server builds');

    await exec('chattr', ['-i', undeletable]);
    await f.restart();
    assert.equal(existsSync(undeletable), false, 'once it can be deleted, the next start removes it');
  });
});

describe('a retention pass with one workspace that cannot be deleted', () => {
  const scope = { owner: 'acme', repo: 'widget', definition: 'autobuild/build.sh' };
  const record = (id: string, state: Build['state']): Build =>
    buildRecord({
      id,
      definition: scope.definition,
      context: `autobuilder/${scope.definition}`,
      state,
      exitCode: state === 'success' ? 0 : null,
      queuedAt: new Date().toISOString(),
      finishedAt: state === 'running' ? null : new Date().toISOString(),
    });

  const setUp = async (name: string) => {
    const dir = await makeTestDir(name);
    const btrfs = createBtrfsDriver();
    let poisoned = '';
    // fails for one workspace only, as a real deletion error would
    const driver: SnapshotDriver = {
      ...btrfs,
      remove: (path) => (poisoned !== '' && path.endsWith(toPathSegment(poisoned)) ? Promise.reject(new Error('EIO: simulated')) : btrfs.remove(path)),
    };
    const workspaces = createWorkspaces({ root: join(dir, 'workspaces'), driver });
    const store = createSqliteBuildStore({ path: join(dir, 'autobuilder.db') });
    const lines: Record<string, unknown>[] = [];
    const sink = new PassThrough();
    sink.on('data', (chunk: Buffer) =>
      lines.push(
        ...chunk
          .toString()
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as Record<string, unknown>),
      ),
    );
    const statuses: CommitStatusPublisher = {
      publish: async () => undefined,
      publishStatus: async () => undefined,
      flush: async () => undefined,
      close: () => undefined,
    };
    await mkdir(join(dir, 'logs'), { recursive: true });
    const retention = createRetention({
      store,
      logs: await createBuildLogs({ dir: join(dir, 'logs') }),
      workspaces,
      artifacts: createArtifactStore({ root: join(dir, 'artifacts') }),
      reports: statuses,
      keepPerBranch: 1,
      artifactGraceMs: 0,
      log: createLogger({ level: 'info', destination: sink }),
    });
    const make = async (state: Build['state']) => {
      const id = createBuildId();
      store.insert(record(id, state));
      await workspaces.prepare({ scope, branch: 'main', fallbackBranch: null, buildId: id, incremental: false });
      return id;
    };
    const workspaceExists = (id: string) => existsSync(join(dir, 'workspaces', 'acme', 'widget', toPathSegment(scope.definition), toPathSegment(id)));
    return {
      store,
      retention,
      make,
      workspaceExists,
      lines,
      poison: (id: string) => void (poisoned = id),
      close: async () => {
        poisoned = '';
        for await (const w of workspaces.list()) await workspaces.remove(w.scope, w.buildId);
        store.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  };

  test('run() logs the failure, keeps that build for the next pass and deletes the others', async () => {
    const s = await setUp('retention-run-failure');
    try {
      const [first, second, third, newest] = [await s.make('failure'), await s.make('failure'), await s.make('failure'), await s.make('failure')] as [
        string,
        string,
        string,
        string,
      ];
      s.poison(second);
      const report = await s.retention.run();
      assert.equal(report.failures, 1);
      assert.equal(report.buildsDeleted, 2);
      assert.equal(s.store.get(first), null);
      assert.equal(s.store.get(third), null);
      assert.equal(s.workspaceExists(first) || s.workspaceExists(third), false);
      assert.notEqual(s.store.get(second), null, 'the build whose workspace could not go is kept');
      assert.ok(s.workspaceExists(newest));
      const warning = s.lines.find((l) => l['buildId'] === second);
      assert.ok(warning, 'the failure is logged with the build id');
      assert.match(String(warning['msg']), /could not delete a build/);
      assert.ok(
        s.lines.some((l) => l['msg'] === 'retention pass done'),
        'the pass finishes',
      );

      s.poison('');
      assert.equal((await s.retention.run()).buildsDeleted, 1, 'the next pass deletes it');
      assert.equal(s.workspaceExists(second), false);
    } finally {
      await s.close();
    }
  });

  test('recover() logs the failure, skips that workspace and removes the other leftovers', async () => {
    const s = await setUp('retention-recover-failure');
    try {
      const [first, second, third] = [await s.make('running'), await s.make('running'), await s.make('running')] as [string, string, string];
      s.poison(second);
      const result = await s.retention.recover();
      assert.deepEqual(result, { interrupted: 3, workspacesRemoved: 2, workspacesFailed: 1 });
      assert.equal(s.workspaceExists(first) || s.workspaceExists(third), false);
      assert.ok(s.workspaceExists(second));
      const error = s.lines.find((l) => l['buildId'] === second);
      assert.ok(error, 'the failure is logged with the build id');
      assert.match(String((error['err'] as { message?: string } | undefined)?.message), /simulated/);
    } finally {
      await s.close();
    }
  });
});

describe('lineage heads and mirror refs of deleted branches and closed pull requests', () => {
  let f: FixtureServer;
  const DEAD_REF_SECONDS = 2;
  const widget = () => join(f.dir, 'data', 'workspaces', 'acme', 'widget');
  const headLink = (definition: string, branch: string) => join(widget(), toPathSegment(definition), 'heads', toPathSegment(branch));
  const workspaceOf = (b: BuildView) => join(widget(), toPathSegment(b.definition), toPathSegment(b.id));
  const mirrorShas = async () =>
    (await exec('git', ['--git-dir', join(f.dir, 'data', 'git', 'acme', 'widget.git'), 'for-each-ref', '--format=%(refname)', 'refs/autobuilder/'])).stdout
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.replace('refs/autobuilder/', ''));

  before(async () => {
    f = await startFixtureServer('retention-dead-refs', {
      retention: { keepPerBranch: 5, intervalSeconds: 3600, artifactGraceSeconds: 0, deadRefHeadSeconds: DEAD_REF_SECONDS },
    });
  });
  after(async () => {
    await f.close();
  });

  const push = async (ref: string, content: string): Promise<BuildView> => {
    const sha = await f.repo.commit({ 'message.txt': content }, `push to ${ref}`);
    const response = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref, sha, cloneUrl: f.cloneUrl }),
    });
    assert.equal(response.status, 202);
    const b = await f.waitForBuild((x) => x.sha === sha && x.ref === ref);
    assert.equal(b.state, 'success', b.description ?? '');
    return b;
  };
  const deleteRef = async (ref: string) => {
    const payload = { ...pushPayload({ owner: 'acme', repo: 'widget', ref, sha: '0'.repeat(40), cloneUrl: f.cloneUrl }), deleted: true, created: false };
    const response = await deliver(f.server.url, { event: 'push', secret: f.secret, payload });
    assert.equal(response.status, 200);
    assert.match(JSON.stringify(response.body), /was deleted/);
  };

  test('a deleted branch and a closed pull request lose their lineage heads and mirror refs after the configured age; live refs keep theirs', async () => {
    const live = await push('refs/heads/main', 'main\n');
    const gone = await push('refs/heads/odd/gone', 'gone\n');
    const comeBack = await push('refs/heads/odd/back', 'back\n');
    const prSha = await f.repo.commit({ 'message.txt': 'pull request\n' }, 'pull request');
    const opened = pullRequestPayload({
      owner: 'acme',
      repo: 'widget',
      cloneUrl: f.cloneUrl,
      action: 'opened',
      number: 7,
      head: 'topic',
      sha: prSha,
      base: 'main',
    });
    assert.equal((await deliver(f.server.url, { event: 'pull_request', secret: f.secret, payload: opened })).status, 202);
    const pr = await f.waitForBuild((b) => b.ref === 'refs/pull/7/head');
    assert.equal(pr.state, 'success', pr.description ?? '');
    for (const [b, branch] of [
      [gone, 'branch:odd/gone'],
      [comeBack, 'branch:odd/back'],
      [pr, 'pull:7'],
      [live, 'branch:main'],
    ] as const) {
      assert.ok(existsSync(headLink(b.definition, branch)), `${branch} has a head`);
    }
    assert.ok((await mirrorShas()).includes(gone.sha));

    await deleteRef('refs/heads/odd/gone');
    await deleteRef('refs/heads/odd/back');
    const closed = pullRequestPayload({
      owner: 'acme',
      repo: 'widget',
      cloneUrl: f.cloneUrl,
      action: 'closed',
      number: 7,
      head: 'topic',
      sha: prSha,
      base: 'main',
    });
    assert.equal((await deliver(f.server.url, { event: 'pull_request', secret: f.secret, payload: closed })).status, 202);

    const early = await f.server.retention.run();
    assert.equal(early.deadRefsCleaned, 0, 'nothing goes before the configured age');
    assert.ok(existsSync(headLink(gone.definition, 'branch:odd/gone')));
    assert.ok((await mirrorShas()).includes(gone.sha));

    // the branch comes back: it is live again and keeps its head
    const cameBack = await push('refs/heads/odd/back', 'back again\n');
    await new Promise((r) => setTimeout(r, DEAD_REF_SECONDS * 1000 + 200));
    const report = await f.server.retention.run();
    assert.equal(report.deadRefsCleaned, 2);
    assert.equal(report.failures, 0);
    assert.equal(existsSync(headLink(gone.definition, 'branch:odd/gone')), false, 'the deleted branch has no head');
    assert.equal(existsSync(workspaceOf(gone)), false, "the deleted branch's workspace is gone");
    assert.equal(existsSync(headLink(pr.definition, 'pull:7')), false, 'the closed pull request has no head');
    assert.equal(existsSync(workspaceOf(pr)), false);
    assert.ok(existsSync(headLink(live.definition, 'branch:main')), 'main keeps its head');
    assert.ok(existsSync(workspaceOf(live)));
    assert.ok(existsSync(headLink(cameBack.definition, 'branch:odd/back')), 'a branch pushed again after its deletion keeps its head');
    assert.ok(existsSync(workspaceOf(cameBack)));
    assert.equal((await fetch(`${f.server.url}/api/builds/${gone.id}`)).status, 200, 'the build records stay (keepPerBranch decides)');

    const shas = await mirrorShas();
    assert.equal(shas.includes(gone.sha), false, 'the mirror ref of the deleted branch is deleted');
    assert.equal(shas.includes(prSha), false, 'the mirror ref of the closed pull request is deleted');
    assert.ok(shas.includes(live.sha) && shas.includes(cameBack.sha) && shas.includes(comeBack.sha), 'mirror refs of live builds stay');
    assert.ok(report.mirrorRefsDeleted >= 2);

    // the server goes on building from the mirror it pruned
    const next = await push('refs/heads/main', 'main again\n');
    assert.equal(next.parentBuildId, live.id);
  });

  test('mirror refs of builds retention deleted are deleted, and none that a kept build names', async () => {
    const builds = [];
    for (let n = 0; n < 7; n++) builds.push(await push('refs/heads/main', `main ${n}\n`));
    await f.server.retention.run();
    const kept = new Set((await f.builds()).map((b) => b.sha));
    const shas = await mirrorShas();
    for (const sha of shas) assert.ok(kept.has(sha), `refs/autobuilder/${sha} is named by a kept build`);
    for (const b of builds.slice(-5)) assert.ok(shas.includes(b.sha), 'the newest five of main keep their mirror refs');
    assert.equal(shas.includes((builds[0] as BuildView).sha), false, "the oldest build's mirror ref went with it");
  });
});
