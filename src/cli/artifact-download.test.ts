import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { assertArtifactFileName, saveArtifact, toEtagDigest } from './artifact-download.js';
import { CliError, EXIT } from './exit-codes.js';

describe('saveArtifact', () => {
  let dir: string;
  const bytes = Buffer.from('the artifact\n'.repeat(10_000));
  const digest = createHash('sha256').update(bytes).digest('hex');
  const answer = () => new Response(bytes);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'artifact-download-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('writes the bytes and returns their sha256 and size when the digest matches', async () => {
    const saved = await saveArtifact(answer(), join(dir, 'ok.bin'), digest);
    assert.deepEqual(saved, { file: join(dir, 'ok.bin'), digest, size: bytes.length });
    assert.deepEqual(await readFile(join(dir, 'ok.bin')), bytes);
  });

  test('removes what it wrote and exits 3 when the sha256 differs, leaving an earlier file alone', async () => {
    await writeFile(join(dir, 'kept.bin'), 'earlier');
    const wrong = 'f'.repeat(64);
    await assert.rejects(saveArtifact(answer(), join(dir, 'kept.bin'), wrong), (err: unknown) => {
      assert.ok(err instanceof CliError);
      assert.equal(err.exitCode, EXIT.server);
      assert.match(err.message, new RegExp(`kept\\.bin: the download's sha256 is ${digest}, not the artifact's ${wrong}; nothing was saved`));
      return true;
    });
    assert.equal(await readFile(join(dir, 'kept.bin'), 'utf8'), 'earlier');
    assert.deepEqual(
      (await readdir(dir)).filter((name) => name.endsWith('.partial')),
      [],
    );
  });

  test('exits 2 when the directory cannot be written', async () => {
    await assert.rejects(
      saveArtifact(answer(), join(dir, 'missing', 'x.bin'), digest),
      (err: unknown) => err instanceof CliError && err.exitCode === EXIT.usage,
    );
  });
});

describe('artifact names and digests', () => {
  test('reads the digest of an ETag, and nothing else', () => {
    const digest = 'a'.repeat(64);
    assert.equal(toEtagDigest(`"${digest}"`), digest);
    assert.equal(toEtagDigest(`W/"${digest}"`), digest);
    assert.equal(toEtagDigest('"abc"'), null);
    assert.equal(toEtagDigest(null), null);
  });

  test('refuses a name that is not a plain file name', () => {
    assert.equal(assertArtifactFileName('result.tar.gz'), 'result.tar.gz');
    for (const name of ['', '.', '..', '../etc/passwd', 'a/b', 'a\\b', 'a\0b'])
      assert.throws(() => assertArtifactFileName(name), CliError, JSON.stringify(name));
  });
});
