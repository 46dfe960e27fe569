import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { isAppError } from '../errors.js';
import { assertBuildId, createBuildLogs, type BuildLogs } from './build-log.js';

/** Reads a follow generator to its end and returns everything it yielded, as text. */
async function drain(chunks: AsyncGenerator<Buffer>): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  return Buffer.concat(parts).toString('utf8');
}

/** Fails if `promise` has not settled within `ms`. */
async function within<T>(promise: Promise<T>, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe('build logs', () => {
  let tmp: string;
  let logs: BuildLogs;
  let n = 0;
  const freshId = (): string => `build-${++n}`;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'autobuilder-build-logs-'));
    logs = await createBuildLogs({ dir: join(tmp, 'logs') });
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test('reads back the lines written, each ending in a newline', async () => {
    const id = freshId();
    const writer = logs.open(id);
    writer.line('first');
    writer.line('');
    writer.line('ünïcödé ✓');
    assert.equal((await logs.read(id))?.toString('utf8'), 'first\n\nünïcödé ✓\n');
    writer.close();
    assert.equal((await logs.read(id))?.toString('utf8'), 'first\n\nünïcödé ✓\n');
  });

  test('read of a build without a log is null', async () => {
    assert.equal(await logs.read('no-such-build'), null);
  });

  test('ignores lines after close, and a second close', async () => {
    const id = freshId();
    const writer = logs.open(id);
    writer.line('kept');
    writer.close();
    writer.line('dropped');
    writer.close();
    assert.equal((await logs.read(id))?.toString('utf8'), 'kept\n');
  });

  test('follow started before writing yields every line exactly once, in order, and ends after close', async () => {
    const id = freshId();
    const writer = logs.open(id);
    const followed = drain(logs.follow(id));
    const expected: string[] = [];
    for (let i = 0; i < 500; i++) {
      const line = `line ${i} ${'x'.repeat(i % 7)}`;
      writer.line(line);
      expected.push(line);
      // Let the follower run between some writes, and not between others.
      if (i % 3 === 0) await tick();
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 2));
    }
    writer.close();
    assert.equal(await within(followed), expected.map((l) => `${l}\n`).join(''));
  });

  test('several followers of one live log each get every line', async () => {
    const id = freshId();
    const writer = logs.open(id);
    const followers = [drain(logs.follow(id)), drain(logs.follow(id)), drain(logs.follow(id))];
    for (let i = 0; i < 100; i++) {
      writer.line(String(i));
      if (i % 10 === 0) await tick();
    }
    writer.close();
    const expected = Array.from({ length: 100 }, (_, i) => `${i}\n`).join('');
    for (const text of await within(Promise.all(followers))) assert.equal(text, expected);
  });

  test('a follower that starts late gets what was written before it', async () => {
    const id = freshId();
    const writer = logs.open(id);
    writer.line('before');
    const followed = drain(logs.follow(id));
    await tick();
    writer.line('after');
    writer.close();
    assert.equal(await within(followed), 'before\nafter\n');
  });

  test('a follower of a live log does not end before close', async () => {
    const id = freshId();
    const writer = logs.open(id);
    writer.line('one');
    let ended = false;
    const followed = drain(logs.follow(id)).finally(() => {
      ended = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(ended, false);
    writer.close();
    assert.equal(await within(followed), 'one\n');
  });

  test('follow(id, offset) resumes from a byte offset', async () => {
    const id = freshId();
    const writer = logs.open(id);
    writer.line('héllo');
    writer.line('world');
    const offset = Buffer.byteLength('héllo\n');
    const live = drain(logs.follow(id, offset));
    await tick();
    writer.line('again');
    writer.close();
    assert.equal(await within(live), 'world\nagain\n');
    assert.equal(await drain(logs.follow(id, offset)), 'world\nagain\n');
    assert.equal(await drain(logs.follow(id, Buffer.byteLength('héllo\nworld\nagain\n'))), '');
  });

  test('follow of a log that is not open yields its content and ends', async () => {
    const id = freshId();
    const writer = logs.open(id);
    writer.line('done');
    writer.close();
    assert.equal(await within(drain(logs.follow(id))), 'done\n');
  });

  test('follow of a log written by another process yields its content and ends', async () => {
    const id = freshId();
    const other = await createBuildLogs({ dir: join(tmp, 'logs') });
    const writer = other.open(id);
    writer.line('from elsewhere');
    assert.equal(await within(drain(logs.follow(id))), 'from elsewhere\n');
    writer.close();
  });

  test('follow of a build without a log yields nothing and ends', async () => {
    assert.equal(await within(drain(logs.follow('never-written'))), '');
  });

  test('open, read and follow refuse a build id that is not safe in a file name', async () => {
    const isNotFound = (err: unknown) => isAppError(err, 'NOT_FOUND');
    assert.throws(() => logs.open('../x'), isNotFound);
    await assert.rejects(logs.read('../x'), isNotFound);
    await assert.rejects(drain(logs.follow('../x')), isNotFound);
  });
});

describe('assertBuildId', () => {
  test("throws NOT_FOUND (404) for '../x'", () => {
    assert.throws(() => assertBuildId('../x'), (err: unknown) => isAppError(err, 'NOT_FOUND') && err.status === 404);
  });

  test('refuses ids with slashes, dots, upper case, NUL, or over 64 characters, and the empty id', () => {
    for (const id of ['a/b', '.', '..', 'a.log', 'ABC', 'a\u0000', 'a'.repeat(65), '']) {
      assert.throws(() => assertBuildId(id), (err: unknown) => isAppError(err, 'NOT_FOUND'), JSON.stringify(id));
    }
  });

  test('returns a valid build id unchanged', () => {
    assert.equal(assertBuildId('mfx1k2p3-9f3a2c1d'), 'mfx1k2p3-9f3a2c1d');
  });
});
