import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { isAppError } from '../errors.js';
import { assertBuildId, createBuildLogs, type BuildLogs } from './build-log.js';
import { MAX_LINE_BYTES } from './read-build-log-lines.js';

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

describe('build log line index', () => {
  let tmp: string;
  let logs: BuildLogs;
  let n = 0;
  const freshId = (): string => `lines-${++n}`;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'autobuilder-build-lines-'));
    logs = await createBuildLogs({ dir: join(tmp, 'logs') });
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  const numbered = (count: number): string[] => Array.from({ length: count }, (_, i) => `line ${i + 1} ${'é'.repeat(i % 5)}`);

  for (const live of [true, false]) {
    test(`reads any window by line number with its byte offsets (${live ? 'while written' : 'finished, scanned once'})`, async () => {
      const id = freshId();
      const writer = logs.open(id);
      const lines = numbered(5000);
      for (const line of lines) writer.line(line);
      if (!live) writer.close();
      const text = lines.map((l) => `${l}\n`).join('');
      for (const [start, count] of [
        [1, 3],
        [1023, 4],
        [1024, 1],
        [1025, 2],
        [4090, 100],
        [2049, 1024],
      ] as const) {
        const got = await logs.readLines(id, { start, count });
        assert.ok(got);
        const expected = lines.slice(start - 1, start - 1 + count);
        assert.deepEqual(got.lines, expected, `start ${start}`);
        assert.equal(got.start, start);
        assert.equal(got.total, 5000);
        assert.equal(got.complete, !live);
        const before = Buffer.byteLength(
          lines
            .slice(0, start - 1)
            .map((l) => `${l}\n`)
            .join(''),
        );
        assert.equal(got.startOffset, before);
        assert.equal(got.endOffset, before + Buffer.byteLength(expected.map((l) => `${l}\n`).join('')));
      }
      const tail = await logs.readLines(id, { tail: 10 });
      assert.deepEqual(tail?.lines, lines.slice(-10));
      assert.equal(tail.start, 4991);
      assert.equal(tail.endOffset, Buffer.byteLength(text));
      const beyond = await logs.readLines(id, { start: 5001, count: 10 });
      assert.deepEqual(beyond?.lines, []);
      assert.equal(beyond.startOffset, Buffer.byteLength(text));
      assert.deepEqual(await logs.stat(id), { size: Buffer.byteLength(text), lines: 5000, live });
      writer.close();
    });
  }

  test('a log that grows after a read is re-indexed from where it was', async () => {
    const id = freshId();
    const other = await createBuildLogs({ dir: join(tmp, 'logs') });
    const writer = other.open(id);
    writer.line('one');
    assert.equal((await logs.stat(id))?.lines, 1);
    writer.line('two');
    writer.line('three');
    assert.deepEqual((await logs.readLines(id, { tail: 2 }))?.lines, ['two', 'three']);
    writer.close();
  });

  test('cuts a line over 64 KiB in line answers and counts a last line without a newline', async () => {
    const id = freshId();
    const long = 'x'.repeat(MAX_LINE_BYTES + 10);
    await writeFile(logs.pathOf(id), `short\n${long}\nunfinished`);
    const got = await logs.readLines(id, { start: 1, count: 10 });
    assert.equal(got?.total, 3);
    assert.equal(got.lines[0], 'short');
    assert.equal(got.lines[1], `${'x'.repeat(MAX_LINE_BYTES)} … [10 more bytes in the raw log]`);
    assert.equal(got.lines[2], 'unfinished');
    assert.equal(got.endOffset, got.size);
  });

  test('readLines and stat of a build without a log are null', async () => {
    assert.equal(await logs.readLines('nothing-here', { tail: 5 }), null);
    assert.equal(await logs.stat('nothing-here'), null);
  });

  test('tells append listeners of each line after it is on disk, with its byte range', async () => {
    const id = freshId();
    const heard: { start: number; end: number; text: string; onDisk: string }[] = [];
    const writer = logs.open(id);
    const stop = logs.onAppend((a) => {
      if (a.buildId === id) heard.push({ start: a.start, end: a.end, text: a.text, onDisk: readFileSync(logs.pathOf(id), 'utf8').slice(0) });
    });
    const closed: string[] = [];
    const stopClose = logs.onClose((buildId) => closed.push(buildId));
    writer.line('héllo');
    writer.line('world');
    writer.close();
    stop();
    stopClose();
    assert.deepEqual(
      heard.map(({ start, end, text }) => ({ start, end, text })),
      [
        { start: 0, end: 7, text: 'héllo' },
        { start: 7, end: 13, text: 'world' },
      ],
    );
    assert.equal(heard[0]?.onDisk, 'héllo\n');
    assert.equal(heard[1]?.onDisk, 'héllo\nworld\n');
    assert.deepEqual(closed, [id]);
  });

  test('a follower ends when its signal aborts, without waiting for more lines', async () => {
    const id = freshId();
    const writer = logs.open(id);
    writer.line('one');
    const controller = new AbortController();
    const followed = drain(logs.follow(id, 0, controller.signal));
    await new Promise((r) => setTimeout(r, 20));
    controller.abort();
    assert.equal(await within(followed, 1000), 'one\n');
    writer.close();
  });
});

describe('assertBuildId', () => {
  test("throws NOT_FOUND (404) for '../x'", () => {
    assert.throws(
      () => assertBuildId('../x'),
      (err: unknown) => isAppError(err, 'NOT_FOUND') && err.status === 404,
    );
  });

  test('refuses ids with slashes, dots, upper case, NUL, or over 64 characters, and the empty id', () => {
    for (const id of ['a/b', '.', '..', 'a.log', 'ABC', 'a\u0000', 'a'.repeat(65), '']) {
      assert.throws(
        () => assertBuildId(id),
        (err: unknown) => isAppError(err, 'NOT_FOUND'),
        JSON.stringify(id),
      );
    }
  });

  test('returns a valid build id unchanged', () => {
    assert.equal(assertBuildId('mfx1k2p3-9f3a2c1d'), 'mfx1k2p3-9f3a2c1d');
  });
});

describe('build log batches (a build output, written off the event loop)', () => {
  let tmp: string;
  let logs: BuildLogs;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'autobuilder-build-log-batches-'));
    logs = await createBuildLogs({ dir: join(tmp, 'logs') });
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test('keeps the order of batches and single lines, counts queued bytes in size, and closes after the queue', async () => {
    const heard: string[] = [];
    const stop = logs.onAppend((a) => heard.push(a.text));
    const writer = logs.open('batches');
    writer.line('first');
    const written = writer.lines(['a', 'b']);
    writer.line('after a and b'); // queued behind the batch, not written before it
    void writer.lines(['c']);
    assert.equal(writer.size, 'first\na\nb\nafter a and b\nc\n'.length);
    assert.deepEqual(heard, ['first'], 'a batch is heard of only once it is on disk');
    const follower = drain(logs.follow('batches'));
    writer.close(); // while batches are queued: they are written first
    await within(written);
    assert.equal(await within(follower), 'first\na\nb\nafter a and b\nc\n');
    assert.equal(readFileSync(join(tmp, 'logs', 'batches.log'), 'utf8'), 'first\na\nb\nafter a and b\nc\n');
    assert.deepEqual(heard, ['first', 'a', 'b', 'after a and b', 'c']);
    assert.deepEqual((await logs.readLines('batches', { tail: 10 }))?.lines, ['first', 'a', 'b', 'after a and b', 'c']);
    stop();
  });

  test('a batch resolves only once it is written: the caller can wait on it (back-pressure)', async () => {
    const writer = logs.open('pressure');
    let done = false;
    const written = writer.lines(['x'.repeat(1024 * 1024)]).then(() => (done = true));
    assert.equal(done, false);
    await within(written);
    assert.equal((await logs.stat('pressure'))?.size, 1024 * 1024 + 1);
    writer.close();
  });
});
