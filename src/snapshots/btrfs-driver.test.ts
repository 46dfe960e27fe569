import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { lstat, mkdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { makeTestDir } from '../../test/support/data-dir.js';
import { createBtrfsDriver } from './btrfs-driver.js';
import { isBtrfs } from './detect-driver.js';
import { runSnapshotDriverConformance } from './snapshot-driver.conformance.js';

const btrfs = async (...args: string[]): Promise<string> => (await promisify(execFile)('btrfs', args)).stdout;

/** A subvolume's root directory has inode number 256 (BTRFS_FIRST_FREE_OBJECTID). */
const SUBVOLUME_ROOT_INODE = 256;

const base = await makeTestDir('btrfs-driver');
const makeDir = async (): Promise<string> => {
  const dir = join(base, randomBytes(4).toString('hex'));
  await mkdir(dir);
  return dir;
};

after(async () => {
  await rm(base, { recursive: true, force: true });
});

test('the test data dir is on Btrfs', async () => {
  assert.ok(await isBtrfs(base), 'run scripts/host-setup.sh: the data dir must be on Btrfs');
});

runSnapshotDriverConformance('btrfs', () => createBtrfsDriver(), makeDir);

describe('btrfs driver', () => {
  const driver = createBtrfsDriver();
  const made: string[] = [];
  let dir: string;

  before(async () => {
    dir = await makeDir();
  });
  after(async () => {
    for (const path of made.reverse()) await driver.remove(path);
  });

  test('has the name btrfs', () => {
    assert.equal(driver.name, 'btrfs');
  });

  test('create makes a subvolume', async () => {
    const ws = join(dir, 'created');
    made.push(ws);
    await driver.create(ws);
    assert.equal((await stat(ws)).ino, SUBVOLUME_ROOT_INODE);
  });

  test('snapshot makes a subvolume', async () => {
    const source = join(dir, 'source');
    const target = join(dir, 'target');
    made.push(source, target);
    await driver.create(source);
    await writeFile(join(source, 'f'), 'x');
    await driver.snapshot(source, target);
    assert.equal((await stat(target)).ino, SUBVOLUME_ROOT_INODE);
    assert.equal(await readFile(join(target, 'f'), 'utf8'), 'x');
  });

  test('remove deletes a plain directory (not a subvolume) inside the volume', async () => {
    const plain = join(dir, 'plain');
    await mkdir(join(plain, 'sub'), { recursive: true });
    await writeFile(join(plain, 'sub', 'file'), 'x');
    assert.notEqual((await stat(plain)).ino, SUBVOLUME_ROOT_INODE);
    await driver.remove(plain);
    await assert.rejects(lstat(plain), { code: 'ENOENT' });
  });

  test('remove deletes a subvolume', async () => {
    const ws = join(dir, 'to-remove');
    made.push(ws);
    await driver.create(ws);
    await writeFile(join(ws, 'f'), 'x');
    await driver.remove(ws);
    await assert.rejects(lstat(ws), { code: 'ENOENT' });
  });
  test('remove deletes a workspace holding nested subvolumes, at any depth, with their content', async () => {
    const ws = join(dir, 'nesting');
    made.push(ws);
    await driver.create(ws);
    await writeFile(join(ws, 'top'), 'x');
    await btrfs('subvolume', 'create', join(ws, 'nested'));
    await writeFile(join(ws, 'nested', 'f'), 'x');
    await btrfs('subvolume', 'create', join(ws, 'nested', 'deeper'));
    await writeFile(join(ws, 'nested', 'deeper', 'f'), 'x');
    await mkdir(join(ws, 'a', 'b'), { recursive: true });
    await btrfs('subvolume', 'snapshot', join(ws, 'nested'), join(ws, 'a', 'b', 'snapshot'));
    await driver.remove(ws);
    await assert.rejects(lstat(ws), { code: 'ENOENT' });
  });

  test('remove deletes a read-only workspace holding a read-only nested subvolume', async () => {
    const ws = join(dir, 'read-only');
    made.push(ws);
    await driver.create(ws);
    await btrfs('subvolume', 'create', join(ws, 'nested'));
    await btrfs('subvolume', 'create', join(ws, 'nested', 'deeper'));
    await btrfs('property', 'set', '-ts', join(ws, 'nested'), 'ro', 'true');
    await btrfs('property', 'set', '-ts', ws, 'ro', 'true');
    await driver.remove(ws);
    await assert.rejects(lstat(ws), { code: 'ENOENT' });
  });

  test('remove deletes a plain directory holding a read-only subvolume', async () => {
    const plain = join(dir, 'plain-with-subvolume');
    await mkdir(join(plain, 'sub'), { recursive: true });
    await btrfs('subvolume', 'create', join(plain, 'sub', 'nested'));
    await writeFile(join(plain, 'sub', 'nested', 'f'), 'x');
    await btrfs('property', 'set', '-ts', join(plain, 'sub', 'nested'), 'ro', 'true');
    await driver.remove(plain);
    await assert.rejects(lstat(plain), { code: 'ENOENT' });
  });

  test('remove of a workspace with a nested subvolume does not follow a symlink to a subvolume outside it', async () => {
    const outside = join(dir, 'outside-subvolume');
    const ws = join(dir, 'with-link');
    made.push(outside, ws);
    await driver.create(outside);
    await btrfs('subvolume', 'create', join(outside, 'inner'));
    await writeFile(join(outside, 'inner', 'precious'), 'keep me');
    await driver.create(ws);
    await btrfs('subvolume', 'create', join(ws, 'nested'));
    await symlink(outside, join(ws, 'link-to-outside'));
    await symlink(join(outside, 'inner'), join(ws, 'nested', 'link-to-inner'));
    await driver.remove(ws);
    await assert.rejects(lstat(ws), { code: 'ENOENT' });
    assert.equal(await readFile(join(outside, 'inner', 'precious'), 'utf8'), 'keep me');
    assert.equal((await stat(join(outside, 'inner'))).ino, SUBVOLUME_ROOT_INODE);
  });

  test('remove rejects with SNAPSHOT_FAILED when the workspace cannot be deleted, and leaves it', async () => {
    const ws = join(dir, 'immutable');
    made.push(ws);
    await driver.create(ws);
    await btrfs('subvolume', 'create', join(ws, 'nested'));
    await promisify(execFile)('chattr', ['+i', ws]);
    try {
      await assert.rejects(driver.remove(ws), { code: 'SNAPSHOT_FAILED' });
      assert.ok((await stat(ws)).isDirectory());
    } finally {
      await promisify(execFile)('chattr', ['-i', ws]);
    }
  });
});
