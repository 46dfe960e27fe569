import assert from 'node:assert/strict';
import { appendFile, lstat, mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { makeTestDir } from '../../test/support/data-dir.js';
import { createBtrfsDriver } from './btrfs-driver.js';
import { createCaches, toCacheName, toScopeName, type CacheOwner, type Caches, type PreparedCache } from './caches.js';
import { createCopyDriver } from './copy-driver.js';
import { isBtrfs } from './detect-driver.js';
import type { SnapshotDriver } from './snapshot-driver.js';

const MiB = 1024 * 1024;
const repository: CacheOwner = { owner: 'acme', repo: 'widget', scope: { kind: 'repository' } };
const fork: CacheOwner = { owner: 'acme', repo: 'widget', scope: { kind: 'pull', number: 7 } };

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

test('cache names are the path segments joined by +, scopes repository or pull-<n>', () => {
  assert.equal(toCacheName('/root/.npm'), 'root+.npm');
  assert.equal(toCacheName('/root/.cache/x'), 'root+.cache+x');
  for (const bad of ['/', 'root', '/a/../b', '/a/./b', '/a+b', '/a//b', '/a/']) assert.throws(() => toCacheName(bad), { code: 'UNSAFE_INPUT' }, bad);
  assert.equal(toScopeName({ kind: 'repository' }), 'repository');
  assert.equal(toScopeName({ kind: 'pull', number: 12 }), 'pull-12');
  assert.throws(() => toScopeName({ kind: 'pull', number: 0 }), { code: 'UNSAFE_INPUT' });
});

/**
 * The cache lifecycle against one snapshot driver: `makeRoot` gives a fresh directory on the
 * filesystem the driver is meant for; `capBy` is how the cap must hold there.
 */
function cacheSuite(name: string, makeDriver: () => SnapshotDriver, makeRoot: () => Promise<string>, capBy: PreparedCache['enforcedBy']): void {
  describe(`persistent caches over the ${name} driver`, () => {
    const driver = makeDriver();
    let root: string;
    let caches: Caches;
    const ids = { n: 0 };
    /** Build ids that sort by age, as createBuildId's do. */
    const nextId = () => `b${String(++ids.n).padStart(6, '0')}-00000000`;
    const headDir = (owner: CacheOwner, path: string) => join(root, owner.owner, owner.repo, toScopeName(owner.scope), toCacheName(path));

    /** One build that appends `line` to `/root/.cache/x/log` and ends as `ok` says. */
    const build = async (owner: CacheOwner, line: string, ok: boolean, capBytes = 64 * MiB) => {
      const buildId = nextId();
      const [cache] = await caches.prepare({ ...owner, buildId, paths: ['/root/.cache/x'], capBytes });
      assert.ok(cache);
      const seen = await readFile(join(cache.hostPath, 'log'), 'utf8').catch(() => '');
      await appendFile(join(cache.hostPath, 'log'), `${line}\n`);
      const outcomes = ok ? await caches.promote({ ...owner, buildId, caches: [cache] }) : (await caches.discard([cache]), []);
      return { buildId, cache, seen, outcomes };
    };

    test('setup', async () => {
      root = await makeRoot();
      if (driver.quota !== undefined) await driver.quota.enable(root);
      caches = createCaches({ root, driver });
    });
    after(async () => {
      // every snapshot goes with the driver's own remove (subvolumes included)
      await caches.collect({ usedBefore: Number.POSITIVE_INFINITY, running: new Set() });
    });

    test('a first build starts empty; its success makes its snapshot the head, which the next build starts from', async () => {
      const first = await build(repository, 'one', true);
      assert.equal(first.cache.parentBuildId, null);
      assert.equal(first.seen, '');
      assert.equal(first.cache.enforcedBy, capBy);
      assert.deepEqual(
        first.outcomes.map((o) => o.result),
        ['promoted'],
      );
      const second = await build(repository, 'two', true);
      assert.equal(second.cache.parentBuildId, first.buildId);
      assert.equal(second.seen, 'one\n');
      assert.equal(await exists(first.cache.hostPath), false, 'the head it replaced is removed');
      const third = await build(repository, 'three', true);
      assert.equal(third.seen, 'one\ntwo\n');
    });

    test('a build that does not succeed leaves the cache as it was', async () => {
      const failed = await build(repository, 'poison', false);
      assert.equal(failed.seen, 'one\ntwo\nthree\n');
      assert.equal(await exists(failed.cache.hostPath), false, 'its snapshot is removed');
      const next = await build(repository, 'four', true);
      assert.equal(next.seen, 'one\ntwo\nthree\n');
    });

    test("two concurrent builds each write to their own snapshot; the newer one's becomes the head", async () => {
      const older = nextId();
      const newer = nextId();
      const [a] = await caches.prepare({ ...repository, buildId: older, paths: ['/root/.cache/x'], capBytes: 64 * MiB });
      const [b] = await caches.prepare({ ...repository, buildId: newer, paths: ['/root/.cache/x'], capBytes: 64 * MiB });
      assert.ok(a && b);
      assert.equal(a.parentBuildId, b.parentBuildId);
      await appendFile(join(a.hostPath, 'log'), 'from a\n');
      await appendFile(join(b.hostPath, 'log'), 'from b\n');
      assert.doesNotMatch(await readFile(join(a.hostPath, 'log'), 'utf8'), /from b/);
      assert.doesNotMatch(await readFile(join(b.hostPath, 'log'), 'utf8'), /from a/);
      // the newer one ends first: the older one's later success does not take its place
      assert.deepEqual(
        (await caches.promote({ ...repository, buildId: newer, caches: [b] })).map((o) => o.result),
        ['promoted'],
      );
      const late = await caches.promote({ ...repository, buildId: older, caches: [a] });
      assert.deepEqual(late, [{ path: '/root/.cache/x', result: 'superseded', headBuildId: newer }]);
      assert.equal(await exists(a.hostPath), false);
      const next = await build(repository, 'five', true);
      assert.match(next.seen, /from b\n$/);
    });

    test("a fork's pull request has its own cache, empty at first, and its success never reaches the repository's", async () => {
      const before = await readFile(join(headDir(repository, '/root/.cache/x'), 'head', 'log'), 'utf8');
      const first = await build(fork, 'from the fork', true);
      assert.equal(first.seen, '', "a fork never reads the repository's cache");
      assert.equal(first.cache.parentBuildId, null);
      const second = await build(fork, 'again', true);
      assert.equal(second.seen, 'from the fork\n', 'its own pull request keeps it');
      assert.equal(await readFile(join(headDir(repository, '/root/.cache/x'), 'head', 'log'), 'utf8'), before);
    });

    test('a cache over its cap is not promoted; the head stays', async () => {
      const buildId = nextId();
      const [cache] = await caches.prepare({ ...repository, buildId, paths: ['/root/.cache/x'], capBytes: 4 * MiB });
      assert.ok(cache);
      const head = await readFile(join(headDir(repository, '/root/.cache/x'), 'head', 'log'), 'utf8');
      // under a qgroup the write itself fails at the cap (EDQUOT); else it succeeds and the promotion refuses
      await writeFile(join(cache.hostPath, 'big.bin'), Buffer.alloc(8 * MiB, 1)).catch((err: NodeJS.ErrnoException) => {
        assert.equal(capBy, 'qgroup', `an unexpected write error: ${err.message}`);
        assert.equal(err.errno, -122, 'EDQUOT');
      });
      const [outcome] = await caches.promote({ ...repository, buildId, caches: [cache] });
      assert.ok(outcome?.result === 'over-cap', JSON.stringify(outcome));
      assert.equal(outcome.capBytes, 4 * MiB);
      assert.ok(outcome.bytes > 3 * MiB, String(outcome.bytes));
      assert.equal(await readFile(join(headDir(repository, '/root/.cache/x'), 'head', 'log'), 'utf8'), head);
      assert.equal(await exists(cache.hostPath), false);
    });

    test('a head over a lowered cap is not used: the build starts empty and says how much it held', async () => {
      const big = nextId();
      const [cache] = await caches.prepare({ ...repository, buildId: big, paths: ['/root/.npm'], capBytes: 64 * MiB });
      assert.ok(cache);
      await writeFile(join(cache.hostPath, 'big.bin'), Buffer.alloc(6 * MiB, 1));
      assert.deepEqual(
        (await caches.promote({ ...repository, buildId: big, caches: [cache] })).map((o) => o.result),
        ['promoted'],
      );
      const buildId = nextId();
      const [lowered] = await caches.prepare({ ...repository, buildId, paths: ['/root/.npm'], capBytes: 2 * MiB });
      assert.ok(lowered);
      assert.equal(lowered.parentBuildId, null);
      assert.ok((lowered.droppedHeadBytes ?? 0) >= 6 * MiB, String(lowered.droppedHeadBytes));
      assert.deepEqual(await readdir(lowered.hostPath), []);
      await caches.discard([lowered]);
    });

    test('recover removes every snapshot that is not a head; collect removes scopes unused since the cutoff', async () => {
      const leftover = nextId();
      const [cache] = await caches.prepare({ ...fork, buildId: leftover, paths: ['/root/.cache/x'], capBytes: 64 * MiB });
      assert.ok(cache);
      assert.equal(await caches.recover(), 1);
      assert.equal(await exists(cache.hostPath), false);
      assert.ok(await exists(join(headDir(fork, '/root/.cache/x'), 'head')), 'heads stay');

      const running = nextId();
      const [inUse] = await caches.prepare({ ...repository, buildId: running, paths: ['/root/.cache/x'], capBytes: 64 * MiB });
      assert.ok(inUse);
      // the fork's pull request was last built an hour ago; the repository's now
      const hourAgo = new Date(Date.now() - 3600_000);
      await utimes(join(root, 'acme', 'widget', 'pull-7', '+used'), hourAgo, hourAgo);
      const report = await caches.collect({ usedBefore: Date.now() - 60_000, running: new Set([running]) });
      assert.deepEqual(report, { scopesRemoved: 1, snapshotsRemoved: 1 });
      assert.equal(await exists(join(root, 'acme', 'widget', 'pull-7')), false);
      assert.ok(await exists(inUse.hostPath), "a running build's snapshot stays");
      assert.ok(await exists(join(headDir(repository, '/root/.cache/x'), 'head')));
      await caches.discard([inUse]);
    });
  });
}

const btrfsBase = await makeTestDir('caches');
const copyBase = await mkdtemp(join(tmpdir(), 'autobuilder-caches-'));
after(async () => {
  await rm(btrfsBase, { recursive: true, force: true });
  await rm(copyBase, { recursive: true, force: true });
});

test('the test data dir is on Btrfs', async () => {
  assert.ok(await isBtrfs(btrfsBase), 'run scripts/host-setup.sh: the data dir must be on Btrfs');
});

cacheSuite(
  'btrfs',
  () => createBtrfsDriver(),
  async () => {
    const dir = join(btrfsBase, 'caches');
    await mkdir(dir);
    return dir;
  },
  'qgroup',
);
cacheSuite(
  'copy',
  () => createCopyDriver(),
  async () => {
    const dir = join(copyBase, 'caches');
    await mkdir(dir);
    return dir;
  },
  'promotion',
);
