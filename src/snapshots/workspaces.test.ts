import assert from 'node:assert/strict';
import { lstat, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative, sep } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isAppError } from '../errors.js';
import { createCopyDriver } from './copy-driver.js';
import { createWorkspaces, toPathSegment, type LineageScope, type Workspaces } from './workspaces.js';

/** True when `path` is `root` itself or lies below it. */
function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

describe('createWorkspaces (copy driver)', () => {
  let tmp: string;
  let root: string;
  let workspaces: Workspaces;
  let n = 0;
  /** A scope of its own for each test, so lineages never mix. */
  const freshScope = (): LineageScope => ({ owner: 'acme', repo: 'widget', definition: `def-${++n}` });

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'autobuilder-workspaces-'));
    root = join(tmp, 'workspaces');
    workspaces = createWorkspaces({ root, driver: createCopyDriver() });
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test('the first prepare of a branch makes a fresh, empty workspace', async () => {
    const scope = freshScope();
    const prepared = await workspaces.prepare({ scope, branch: 'branch:main', fallbackBranch: null, buildId: 'b1', incremental: true });
    assert.equal(prepared.parentBuildId, null);
    assert.deepEqual(await readdir(prepared.path), []);
    assert.ok(isInside(root, prepared.path));
    assert.equal(await workspaces.head(scope, 'branch:main'), null);
  });

  test('after promote, the next prepare on the branch is a snapshot of the promoted workspace', async () => {
    const scope = freshScope();
    const first = await workspaces.prepare({ scope, branch: 'branch:main', fallbackBranch: null, buildId: 'b1', incremental: true });
    await writeFile(join(first.path, 'build-output.o'), 'from build 1');
    await workspaces.promote({ scope, branch: 'branch:main', buildId: 'b1' });
    const second = await workspaces.prepare({ scope, branch: 'branch:main', fallbackBranch: null, buildId: 'b2', incremental: true });
    assert.equal(second.parentBuildId, 'b1');
    assert.notEqual(second.path, first.path);
    assert.equal(await readFile(join(second.path, 'build-output.o'), 'utf8'), 'from build 1');
    await writeFile(join(second.path, 'build-output.o'), 'from build 2');
    assert.equal(await readFile(join(first.path, 'build-output.o'), 'utf8'), 'from build 1');
  });

  test('a workspace that was not promoted is not the parent of the next build', async () => {
    const scope = freshScope();
    const first = await workspaces.prepare({ scope, branch: 'branch:main', fallbackBranch: null, buildId: 'b1', incremental: true });
    await writeFile(join(first.path, 'red'), 'x');
    const second = await workspaces.prepare({ scope, branch: 'branch:main', fallbackBranch: null, buildId: 'b2', incremental: true });
    assert.equal(second.parentBuildId, null);
    assert.deepEqual(await readdir(second.path), []);
  });

  test('a new branch starts from the head of fallbackBranch', async () => {
    const scope = freshScope();
    const main = await workspaces.prepare({ scope, branch: 'branch:main', fallbackBranch: 'branch:main', buildId: 'm1', incremental: true });
    await writeFile(join(main.path, 'cache'), 'main cache');
    await workspaces.promote({ scope, branch: 'branch:main', buildId: 'm1' });
    const feature = await workspaces.prepare({ scope, branch: 'branch:feature/x', fallbackBranch: 'branch:main', buildId: 'f1', incremental: true });
    assert.equal(feature.parentBuildId, 'm1');
    assert.equal(await readFile(join(feature.path, 'cache'), 'utf8'), 'main cache');
    // The fallback does not make the new branch's head: that is still unset.
    assert.equal(await workspaces.head(scope, 'branch:feature/x'), null);
  });

  test("a branch prefers its own head over the fallback branch's", async () => {
    const scope = freshScope();
    await workspaces.prepare({ scope, branch: 'branch:main', fallbackBranch: null, buildId: 'm1', incremental: true });
    await workspaces.promote({ scope, branch: 'branch:main', buildId: 'm1' });
    const f1 = await workspaces.prepare({ scope, branch: 'branch:dev', fallbackBranch: 'branch:main', buildId: 'd1', incremental: true });
    await writeFile(join(f1.path, 'dev'), 'x');
    await workspaces.promote({ scope, branch: 'branch:dev', buildId: 'd1' });
    const f2 = await workspaces.prepare({ scope, branch: 'branch:dev', fallbackBranch: 'branch:main', buildId: 'd2', incremental: true });
    assert.equal(f2.parentBuildId, 'd1');
    assert.equal(await readFile(join(f2.path, 'dev'), 'utf8'), 'x');
  });

  test('a new branch is fresh when the fallback branch has no head either', async () => {
    const scope = freshScope();
    const prepared = await workspaces.prepare({ scope, branch: 'branch:feature/y', fallbackBranch: 'branch:main', buildId: 'f1', incremental: true });
    assert.equal(prepared.parentBuildId, null);
  });

  test('lineages of different definitions never share heads', async () => {
    const a = freshScope();
    const b = freshScope();
    await workspaces.prepare({ scope: a, branch: 'branch:main', fallbackBranch: null, buildId: 'a1', incremental: true });
    await workspaces.promote({ scope: a, branch: 'branch:main', buildId: 'a1' });
    const prepared = await workspaces.prepare({ scope: b, branch: 'branch:main', fallbackBranch: null, buildId: 'b1', incremental: true });
    assert.equal(prepared.parentBuildId, null);
    assert.equal(await workspaces.head(b, 'branch:main'), null);
  });

  test('incremental: false always makes a fresh workspace, even with a head on the branch', async () => {
    const scope = freshScope();
    const first = await workspaces.prepare({ scope, branch: 'branch:main', fallbackBranch: 'branch:main', buildId: 'b1', incremental: true });
    await writeFile(join(first.path, 'stale'), 'x');
    await workspaces.promote({ scope, branch: 'branch:main', buildId: 'b1' });
    const second = await workspaces.prepare({ scope, branch: 'branch:main', fallbackBranch: 'branch:main', buildId: 'b2', incremental: false });
    assert.equal(second.parentBuildId, null);
    assert.deepEqual(await readdir(second.path), []);
    const other = await workspaces.prepare({ scope, branch: 'branch:other', fallbackBranch: 'branch:main', buildId: 'b3', incremental: false });
    assert.equal(other.parentBuildId, null);
  });

  test('promote replaces the head: head() returns the new build and the heads entry is a symlink', async () => {
    const scope = freshScope();
    await workspaces.prepare({ scope, branch: 'branch:main', fallbackBranch: null, buildId: 'b1', incremental: true });
    await workspaces.promote({ scope, branch: 'branch:main', buildId: 'b1' });
    assert.equal(await workspaces.head(scope, 'branch:main'), 'b1');
    await workspaces.prepare({ scope, branch: 'branch:main', fallbackBranch: null, buildId: 'b2', incremental: true });
    await workspaces.promote({ scope, branch: 'branch:main', buildId: 'b2' });
    assert.equal(await workspaces.head(scope, 'branch:main'), 'b2');

    const headsDir = join(root, toPathSegment(scope.owner), toPathSegment(scope.repo), toPathSegment(scope.definition), 'heads');
    const entries = await readdir(headsDir);
    assert.deepEqual(entries, [toPathSegment('branch:main')], 'one entry per branch, no temp files left behind');
    const link = join(headsDir, toPathSegment('branch:main'));
    assert.ok((await lstat(link)).isSymbolicLink());
    assert.equal(await readlink(link), `../${toPathSegment('b2')}`);
    const third = await workspaces.prepare({ scope, branch: 'branch:main', fallbackBranch: null, buildId: 'b3', incremental: true });
    assert.equal(third.parentBuildId, 'b2');
  });

  test('concurrent promotes of the same branch all succeed and leave one of them as head', async () => {
    const scope = freshScope();
    const ids = Array.from({ length: 10 }, (_, i) => `b${i}`);
    for (const buildId of ids) await workspaces.prepare({ scope, branch: 'branch:main', fallbackBranch: null, buildId, incremental: true });
    // The coordinator runs builds in parallel, so two green builds of a branch may promote at once.
    const results = await Promise.allSettled(ids.map((buildId) => workspaces.promote({ scope, branch: 'branch:main', buildId })));
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []));
    assert.deepEqual(failures, []);
    assert.ok(ids.includes((await workspaces.head(scope, 'branch:main')) ?? ''));
    const headsDir = join(root, toPathSegment(scope.owner), toPathSegment(scope.repo), toPathSegment(scope.definition), 'heads');
    assert.deepEqual(await readdir(headsDir), [toPathSegment('branch:main')], 'no temp links left behind');
  });

  test('remove deletes a workspace and is idempotent', async () => {
    const scope = freshScope();
    const prepared = await workspaces.prepare({ scope, branch: 'branch:main', fallbackBranch: null, buildId: 'b1', incremental: true });
    await workspaces.remove(scope, 'b1');
    await assert.rejects(lstat(prepared.path), { code: 'ENOENT' });
    await workspaces.remove(scope, 'b1');
  });

  test('branch names with slashes and dots keep every workspace and head inside the root', async () => {
    const scope = freshScope();
    const hostile = ['feature/../x', '..', '.', '../../../../etc', 'a/./b', '/abs', 'x/..', '%2E%2E', 'branch:..'];
    let i = 0;
    for (const branch of hostile) {
      const buildId = `b${++i}`;
      const prepared = await workspaces.prepare({ scope, branch, fallbackBranch: '..', buildId, incremental: true });
      assert.ok(isInside(root, prepared.path), `${branch}: ${prepared.path} is inside ${root}`);
      await workspaces.promote({ scope, branch, buildId });
      assert.equal(await workspaces.head(scope, branch), buildId, `head of ${JSON.stringify(branch)}`);
    }
    const headsDir = join(root, toPathSegment(scope.owner), toPathSegment(scope.repo), toPathSegment(scope.definition), 'heads');
    const heads = await readdir(headsDir);
    assert.equal(heads.length, hostile.length, 'every branch has its own head entry, none collapsed into another');
    for (const entry of heads) {
      assert.ok((await lstat(join(headsDir, entry))).isSymbolicLink());
      assert.ok(isInside(root, join(headsDir, entry)));
    }
    // Nothing was written next to the root.
    assert.deepEqual(await readdir(tmp), ['workspaces']);
  });

  test('owners, repositories, definitions and build ids with dots and slashes stay inside the root', async () => {
    const scope: LineageScope = { owner: '..', repo: '../..', definition: 'autobuild/../../build.sh' };
    const prepared = await workspaces.prepare({ scope, branch: 'branch:main', fallbackBranch: null, buildId: '../../escape', incremental: true });
    assert.ok(isInside(root, prepared.path), prepared.path);
    await workspaces.promote({ scope, branch: 'branch:main', buildId: '../../escape' });
    assert.equal(await workspaces.head(scope, 'branch:main'), '../../escape');
    assert.deepEqual(await readdir(tmp), ['workspaces']);
  });
});

describe('toPathSegment', () => {
  const samples = [
    '.',
    '..',
    '...',
    'a/b',
    '/',
    '//',
    'feature/../x',
    '../x',
    'x/..',
    'a\u0000b',
    '%2E',
    '%',
    'é',
    'a b',
    '*',
    'main',
    'v1.2.3',
    'branch:feature/x',
    '\\..\\',
    '~',
  ];

  test('never yields ".", ".." or a "/"', () => {
    for (const value of samples) {
      const segment = toPathSegment(value);
      assert.notEqual(segment, '.', JSON.stringify(value));
      assert.notEqual(segment, '..', JSON.stringify(value));
      assert.ok(!segment.includes('/'), `${JSON.stringify(value)} → ${segment}`);
      assert.ok(!segment.includes('\u0000'), `${JSON.stringify(value)} → ${segment}`);
      assert.ok(!segment.includes('.'), `${JSON.stringify(value)} → ${segment} has no dot at all`);
    }
  });

  test('is reversible with decodeURIComponent and gives distinct segments for distinct values', () => {
    const seen = new Map<string, string>();
    for (const value of samples) {
      const segment = toPathSegment(value);
      assert.equal(decodeURIComponent(segment), value);
      assert.equal(seen.get(segment), undefined, `${JSON.stringify(value)} and ${JSON.stringify(seen.get(segment))} collide`);
      seen.set(segment, value);
    }
  });

  test('keeps a plain name readable', () => {
    assert.equal(toPathSegment('main'), 'main');
    assert.equal(toPathSegment('my-repo_1'), 'my-repo_1');
  });

  test('rejects an empty string with UNSAFE_INPUT', () => {
    assert.throws(
      () => toPathSegment(''),
      (err: unknown) => isAppError(err, 'UNSAFE_INPUT'),
    );
  });
});
