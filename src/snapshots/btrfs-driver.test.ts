import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeTestDir } from '../../test/support/data-dir.js';
import { createBtrfsDriver } from './btrfs-driver.js';
import { isBtrfs } from './detect-driver.js';
import { runSnapshotDriverConformance } from './snapshot-driver.conformance.js';

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
});
