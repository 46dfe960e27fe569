import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isAppError } from '../errors.js';
import { createArtifactStore, isDigest, type ArtifactStore } from './artifact-store.js';

const sha256 = (bytes: Buffer | string): string => createHash('sha256').update(bytes).digest('hex');

describe('artifact store', () => {
  let root: string;
  let store: ArtifactStore;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'autobuilder-artifacts-'));
    store = createArtifactStore({ root });
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** Writes `bytes` to a fresh temp path of the store and returns it. */
  const stage = async (bytes: Buffer | string): Promise<string> => {
    const temp = await store.tempPath();
    await writeFile(temp, bytes);
    return temp;
  };

  test('put returns the sha256 and size of the bytes and stores them at sha256/ab/cd/<digest>', async () => {
    const bytes = Buffer.from('hello artifact\n');
    const temp = await stage(bytes);
    const stored = await store.put(temp);
    const digest = sha256(bytes);
    assert.deepEqual(stored, { digest, size: bytes.length });
    const path = join(root, 'sha256', digest.slice(0, 2), digest.slice(2, 4), digest);
    assert.equal(store.pathOf(digest), path);
    assert.deepEqual(await readFile(path), bytes);
    await assert.rejects(stat(temp), { code: 'ENOENT' });
  });

  test('stores an empty file and a binary file of several chunks', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 7);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) % 256;
    for (const bytes of [Buffer.alloc(0), big]) {
      const stored = await store.put(await stage(bytes));
      assert.deepEqual(stored, { digest: sha256(bytes), size: bytes.length });
      assert.ok((await readFile(store.pathOf(stored.digest))).equals(bytes));
    }
  });

  test('a second put of the same bytes keeps one copy and removes the temp file', async () => {
    const bytes = 'same content twice';
    const first = await store.put(await stage(bytes));
    const { mtimeMs } = await stat(store.pathOf(first.digest));
    const temp = await stage(bytes);
    const second = await store.put(temp);
    assert.deepEqual(second, first);
    await assert.rejects(stat(temp), { code: 'ENOENT' });
    const dir = join(root, 'sha256', first.digest.slice(0, 2), first.digest.slice(2, 4));
    assert.deepEqual(await readdir(dir), [first.digest]);
    assert.equal((await stat(store.pathOf(first.digest))).mtimeMs, mtimeMs, 'the stored copy was not rewritten');
    assert.deepEqual(await readdir(join(root, 'tmp')), [], 'no temp files left behind');
  });

  test('tempPath gives distinct paths inside the store', async () => {
    const a = await store.tempPath();
    const b = await store.tempPath();
    assert.notEqual(a, b);
    for (const path of [a, b]) assert.ok(!relative(root, path).startsWith('..'));
  });

  test('stat gives the size of a stored artifact', async () => {
    const stored = await store.put(await stage('12345'));
    assert.deepEqual(await store.stat(stored.digest), { digest: stored.digest, size: 5 });
  });

  test('stat of an unknown digest is null', async () => {
    assert.equal(await store.stat('0'.repeat(64)), null);
  });

  for (const digest of ['../x', '', 'A'.repeat(64), 'a'.repeat(63), `${'a'.repeat(64)}/`, `../../${'a'.repeat(58)}`]) {
    test(`pathOf and stat refuse the digest ${JSON.stringify(digest)} with BAD_REQUEST`, async () => {
      assert.throws(
        () => store.pathOf(digest),
        (err: unknown) => isAppError(err, 'BAD_REQUEST') && err.status === 400,
      );
      await assert.rejects(store.stat(digest), (err: unknown) => isAppError(err, 'BAD_REQUEST'));
    });
  }
});

describe('isDigest', () => {
  test('is true only for 64 lowercase hex characters', () => {
    assert.equal(isDigest('a'.repeat(64)), true);
    assert.equal(isDigest('A'.repeat(64)), false);
    assert.equal(isDigest('a'.repeat(65)), false);
    assert.equal(isDigest('a'.repeat(40)), false);
  });
});
