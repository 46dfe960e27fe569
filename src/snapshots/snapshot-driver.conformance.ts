import assert from 'node:assert/strict';
import { chmod, chown, lstat, mkdir, readdir, readFile, readlink, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { isAppError } from '../errors.js';
import type { SnapshotDriver } from './snapshot-driver.js';

/** Asserts that `promise` rejects with an AppError of `code`. */
async function assertRejectsWithCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isAppError(err), `expected an AppError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Registers the conformance suite of the {@link SnapshotDriver} contract (see
 * snapshot-driver.ts) for one driver. `makeDriver` gives the driver under test; `makeDir`
 * gives a fresh, empty directory on the filesystem the driver is meant for (the caller
 * removes these directories; the suite removes every workspace it made with the driver's
 * own `remove`, so Btrfs subvolumes go too).
 */
export function runSnapshotDriverConformance(name: string, makeDriver: () => SnapshotDriver, makeDir: () => Promise<string>): void {
  describe(`SnapshotDriver conformance: ${name}`, () => {
    const driver = makeDriver();
    /** Workspaces to remove after the suite, newest first. */
    const made: string[] = [];
    const track = (path: string): string => {
      made.unshift(path);
      return path;
    };
    const create = async (path: string): Promise<string> => {
      track(path);
      await driver.create(path);
      return path;
    };
    const snapshot = async (source: string, target: string): Promise<string> => {
      track(target);
      await driver.snapshot(source, target);
      return target;
    };

    after(async () => {
      for (const path of made) await driver.remove(path);
    });

    /** A workspace with files, nested dirs, symlinks and modes that a snapshot must keep. */
    const populate = async (ws: string, outside: string): Promise<void> => {
      await writeFile(join(ws, 'plain.txt'), 'hello\n');
      await writeFile(join(ws, 'empty'), '');
      await writeFile(join(ws, '.hidden'), 'dotfile');
      await writeFile(join(ws, 'binary.bin'), Buffer.from([0, 1, 2, 255, 254, 0, 10, 13]));
      await mkdir(join(ws, 'a', 'b', 'c'), { recursive: true });
      await mkdir(join(ws, 'empty-dir'));
      await writeFile(join(ws, 'a', 'b', 'c', 'deep.txt'), 'deep');
      await writeFile(join(ws, 'run.sh'), '#!/bin/sh\necho hi\n');
      await chmod(join(ws, 'run.sh'), 0o755);
      await writeFile(join(ws, 'secret'), 's');
      await chmod(join(ws, 'secret'), 0o600);
      await chmod(join(ws, 'a', 'b'), 0o750);
      await symlink('a/b/c/deep.txt', join(ws, 'link-relative'));
      await symlink('does-not-exist', join(ws, 'link-dangling'));
      await symlink(outside, join(ws, 'link-outside'));
    };

    test('create makes an empty, writable directory', async () => {
      const dir = await makeDir();
      const ws = await create(join(dir, 'ws'));
      assert.ok((await stat(ws)).isDirectory());
      assert.deepEqual(await readdir(ws), []);
      await writeFile(join(ws, 'file'), 'written');
      assert.equal(await readFile(join(ws, 'file'), 'utf8'), 'written');
      await mkdir(join(ws, 'sub'));
      assert.ok((await stat(join(ws, 'sub'))).isDirectory());
    });

    test('create rejects with SNAPSHOT_FAILED when the path already exists as a directory', async () => {
      const dir = await makeDir();
      const path = join(dir, 'taken');
      await mkdir(path);
      await writeFile(join(path, 'keep'), 'kept');
      await assertRejectsWithCode(driver.create(path), 'SNAPSHOT_FAILED');
      assert.equal(await readFile(join(path, 'keep'), 'utf8'), 'kept');
    });

    test('create rejects with SNAPSHOT_FAILED when the path already exists as a file', async () => {
      const dir = await makeDir();
      const path = join(dir, 'file');
      await writeFile(path, 'kept');
      await assertRejectsWithCode(driver.create(path), 'SNAPSHOT_FAILED');
      assert.equal(await readFile(path, 'utf8'), 'kept');
    });

    test('create rejects with SNAPSHOT_FAILED when the parent directory is missing', async () => {
      const dir = await makeDir();
      await assertRejectsWithCode(driver.create(join(dir, 'missing', 'ws')), 'SNAPSHOT_FAILED');
      assert.equal(await exists(join(dir, 'missing')), false);
    });

    test('snapshot copies files, nested dirs, symlinks, modes and content', async () => {
      const dir = await makeDir();
      const outside = join(dir, 'outside');
      await mkdir(outside);
      await writeFile(join(outside, 'not-copied'), 'x');
      const source = await create(join(dir, 'source'));
      await populate(source, outside);
      const target = await snapshot(source, join(dir, 'target'));

      assert.deepEqual((await readdir(target)).sort(), (await readdir(source)).sort());
      assert.equal(await readFile(join(target, 'plain.txt'), 'utf8'), 'hello\n');
      assert.equal(await readFile(join(target, 'empty'), 'utf8'), '');
      assert.equal(await readFile(join(target, '.hidden'), 'utf8'), 'dotfile');
      assert.deepEqual(await readFile(join(target, 'binary.bin')), Buffer.from([0, 1, 2, 255, 254, 0, 10, 13]));
      assert.equal(await readFile(join(target, 'a', 'b', 'c', 'deep.txt'), 'utf8'), 'deep');
      assert.ok((await stat(join(target, 'empty-dir'))).isDirectory());
      assert.deepEqual(await readdir(join(target, 'empty-dir')), []);

      assert.equal((await stat(join(target, 'run.sh'))).mode & 0o7777, 0o755);
      assert.equal((await stat(join(target, 'secret'))).mode & 0o7777, 0o600);
      assert.equal((await stat(join(target, 'a', 'b'))).mode & 0o7777, 0o750);

      for (const [link, to] of [
        ['link-relative', 'a/b/c/deep.txt'],
        ['link-dangling', 'does-not-exist'],
        ['link-outside', outside],
      ] as const) {
        assert.ok((await lstat(join(target, link))).isSymbolicLink(), `${link} stays a symlink`);
        assert.equal(await readlink(join(target, link)), to);
      }
      assert.equal(await readFile(join(target, 'link-relative'), 'utf8'), 'deep');
    });

    test('snapshot keeps file modification times, which incremental make builds rely on', async () => {
      const dir = await makeDir();
      const source = await create(join(dir, 'source'));
      await writeFile(join(source, 'old.o'), 'object');
      const past = new Date('2001-02-03T04:05:06.789Z');
      await utimes(join(source, 'old.o'), past, past);
      const target = await snapshot(source, join(dir, 'target'));
      const [s, t] = await Promise.all([stat(join(source, 'old.o'), { bigint: true }), stat(join(target, 'old.o'), { bigint: true })]);
      assert.equal(t.mtimeNs, s.mtimeNs);
    });

    test('snapshot keeps file owners', { skip: process.getuid?.() !== 0 && 'chown needs root' }, async () => {
      const dir = await makeDir();
      const source = await create(join(dir, 'source'));
      await writeFile(join(source, 'owned'), 'x');
      await chown(join(source, 'owned'), 4321, 8765);
      const target = await snapshot(source, join(dir, 'target'));
      const s = await stat(join(target, 'owned'));
      assert.equal(s.uid, 4321);
      assert.equal(s.gid, 8765);
    });

    test('writes to a snapshot never show in its source, and writes to the source never show in the snapshot', async () => {
      const dir = await makeDir();
      const source = await create(join(dir, 'source'));
      await writeFile(join(source, 'shared.txt'), 'original');
      await writeFile(join(source, 'to-delete'), 'x');
      await mkdir(join(source, 'sub'));
      await writeFile(join(source, 'sub', 'nested.txt'), 'nested');
      const target = await snapshot(source, join(dir, 'target'));

      await writeFile(join(target, 'shared.txt'), 'changed in target');
      await writeFile(join(target, 'sub', 'nested.txt'), 'changed in target', { flag: 'a' });
      await writeFile(join(target, 'new-in-target'), 'new');
      await rm(join(target, 'to-delete'));
      assert.equal(await readFile(join(source, 'shared.txt'), 'utf8'), 'original');
      assert.equal(await readFile(join(source, 'sub', 'nested.txt'), 'utf8'), 'nested');
      assert.equal(await exists(join(source, 'new-in-target')), false);
      assert.equal(await readFile(join(source, 'to-delete'), 'utf8'), 'x');

      await writeFile(join(source, 'shared.txt'), 'changed in source');
      await writeFile(join(source, 'new-in-source'), 'new');
      assert.equal(await readFile(join(target, 'shared.txt'), 'utf8'), 'changed in target');
      assert.equal(await exists(join(target, 'new-in-source')), false);
    });

    test('a snapshot of a snapshot has the content of its source and stays apart from both', async () => {
      const dir = await makeDir();
      const first = await create(join(dir, 'first'));
      await writeFile(join(first, 'gen'), '1');
      const second = await snapshot(first, join(dir, 'second'));
      await writeFile(join(second, 'gen'), '2');
      await writeFile(join(second, 'only-in-second'), 'x');
      const third = await snapshot(second, join(dir, 'third'));
      assert.equal(await readFile(join(third, 'gen'), 'utf8'), '2');
      assert.equal(await readFile(join(third, 'only-in-second'), 'utf8'), 'x');
      await writeFile(join(third, 'gen'), '3');
      assert.equal(await readFile(join(first, 'gen'), 'utf8'), '1');
      assert.equal(await readFile(join(second, 'gen'), 'utf8'), '2');
      assert.equal(await readFile(join(third, 'gen'), 'utf8'), '3');
    });

    test('snapshot rejects with SNAPSHOT_FAILED when the target is an existing directory, and leaves it as it was', async () => {
      const dir = await makeDir();
      const source = await create(join(dir, 'source'));
      await writeFile(join(source, 'from-source'), 'x');
      const target = join(dir, 'target');
      await mkdir(target);
      await writeFile(join(target, 'keep'), 'kept');
      // A driver that copies *into* an existing directory leaves `target/source` behind.
      track(target);
      track(join(target, basename(source)));
      await assertRejectsWithCode(driver.snapshot(source, target), 'SNAPSHOT_FAILED');
      assert.deepEqual(await readdir(target), ['keep']);
      assert.equal(await readFile(join(target, 'keep'), 'utf8'), 'kept');
    });

    test('snapshot rejects with SNAPSHOT_FAILED when the target is an existing file', async () => {
      const dir = await makeDir();
      const source = await create(join(dir, 'source'));
      const target = join(dir, 'target');
      await writeFile(target, 'kept');
      await assertRejectsWithCode(driver.snapshot(source, target), 'SNAPSHOT_FAILED');
      assert.equal(await readFile(target, 'utf8'), 'kept');
    });

    test('snapshot rejects with SNAPSHOT_FAILED when the source does not exist', async () => {
      const dir = await makeDir();
      track(join(dir, 'target'));
      await assertRejectsWithCode(driver.snapshot(join(dir, 'missing'), join(dir, 'target')), 'SNAPSHOT_FAILED');
      assert.equal(await exists(join(dir, 'target')), false);
    });

    test('remove deletes a workspace with everything in it', async () => {
      const dir = await makeDir();
      const ws = await create(join(dir, 'ws'));
      await populate(ws, dir);
      await driver.remove(ws);
      assert.equal(await exists(ws), false);
    });

    test('remove deletes a snapshot', async () => {
      const dir = await makeDir();
      const source = await create(join(dir, 'source'));
      const target = await snapshot(source, join(dir, 'target'));
      await driver.remove(target);
      assert.equal(await exists(target), false);
    });

    test('remove is idempotent: a second remove and a remove of a path that never existed resolve', async () => {
      const dir = await makeDir();
      const ws = await create(join(dir, 'ws'));
      await driver.remove(ws);
      await driver.remove(ws);
      assert.equal(await exists(ws), false);
      await driver.remove(join(dir, 'never-existed'));
      await driver.remove(join(dir, 'no-such-parent', 'never-existed'));
      assert.equal(await exists(join(dir, 'never-existed')), false);
    });

    test('remove of a snapshot leaves its source intact', async () => {
      const dir = await makeDir();
      const source = await create(join(dir, 'source'));
      await mkdir(join(source, 'sub'));
      await writeFile(join(source, 'sub', 'file'), 'still here');
      const target = await snapshot(source, join(dir, 'target'));
      await driver.remove(target);
      assert.equal(await readFile(join(source, 'sub', 'file'), 'utf8'), 'still here');
      await writeFile(join(source, 'writable'), 'yes');
      assert.equal(await readFile(join(source, 'writable'), 'utf8'), 'yes');
    });

    test('remove does not follow symlinks out of the workspace', async () => {
      const dir = await makeDir();
      const outside = join(dir, 'outside');
      await mkdir(outside);
      await writeFile(join(outside, 'precious'), 'keep me');
      const ws = await create(join(dir, 'ws'));
      await symlink(outside, join(ws, 'link-to-dir'));
      await symlink(join(outside, 'precious'), join(ws, 'link-to-file'));
      await driver.remove(ws);
      assert.equal(await exists(ws), false);
      assert.equal(await readFile(join(outside, 'precious'), 'utf8'), 'keep me');
    });
  });
}
