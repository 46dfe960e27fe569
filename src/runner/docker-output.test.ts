import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { readDockerOutput, type OutputStream } from './docker-output.js';

/** One frame of Docker's multiplexed stream: 8-byte header, then the payload. */
function frame(stream: 1 | 2 | 0, payload: string | Buffer): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

/** Reads `bytes` as if the socket delivered them in chunks of `size`. */
async function read(bytes: Buffer, size: number, maxLineBytes = 1024): Promise<[OutputStream, string, boolean][]> {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
  const lines: [OutputStream, string, boolean][] = [];
  await readDockerOutput(Readable.from(chunks), {
    maxLineBytes,
    onLines: (stream, batch) => {
      lines.push(...batch.map((line): [OutputStream, string, boolean] => [stream, line.text, line.complete]));
    },
  });
  return lines;
}

describe('Docker output reader', () => {
  test('demultiplexes stdout and stderr into lines, frames and lines cut anywhere', async () => {
    const bytes = Buffer.concat([frame(1, 'out 1\nout'), frame(2, 'err 1\n'), frame(1, ' 2\n'), frame(0, 'stdin echo\n'), frame(2, 'err 2 without newline')]);
    for (const size of [1, 3, 8, 9, 1000]) {
      assert.deepEqual(
        await read(bytes, size),
        [
          ['stdout', 'out 1', true],
          ['stderr', 'err 1', true],
          ['stdout', 'out 2', true],
          ['stderr', 'err 2 without newline', true],
        ],
        `chunks of ${size}`,
      );
    }
  });

  test('a line longer than maxLineBytes comes in pieces', async () => {
    const lines = await read(frame(1, `${'z'.repeat(2500)}\n`), 700);
    assert.deepEqual(
      lines.map(([, text, complete]) => [text.length, complete]),
      [
        [1024, false],
        [1024, false],
        [452, true],
      ],
    );
  });

  test('a stream that fails ends the output with what came before', async () => {
    const stream = new Readable({ read() {} });
    stream.push(frame(1, 'before\npartial'));
    const lines: string[] = [];
    const done = readDockerOutput(stream, {
      maxLineBytes: 64,
      onLines: (_s, batch) => {
        lines.push(...batch.map((line) => line.text));
      },
    });
    setImmediate(() => stream.destroy(new Error('connection reset')));
    await done;
    assert.deepEqual(lines, ['before', 'partial']);
  });
});

describe('Docker output reader back-pressure', () => {
  test('reads no more of the stream while the lines it handed on are not written', async () => {
    let pulled = 0;
    const stream = new Readable({
      highWaterMark: 1024,
      read() {
        pulled += 1;
        this.push(frame(1, `${'p'.repeat(100)}\n`));
      },
    });
    let release: () => void = () => undefined;
    const calls: number[] = [];
    const done = readDockerOutput(stream, {
      maxLineBytes: 1024,
      onLines: () => {
        calls.push(pulled);
        // the first batch is never written until released: the reader must wait for it
        return calls.length === 1 ? new Promise<void>((resolve) => (release = resolve)) : undefined;
      },
    });
    await new Promise((r) => setTimeout(r, 100));
    const batches = () => calls.length;
    assert.equal(batches(), 1, 'no second batch while the first is being written');
    assert.ok(pulled <= 12, `the stream was read ${pulled} times while the reader waited (its buffer, no more)`);
    release();
    await new Promise((r) => setTimeout(r, 20));
    assert.ok(batches() > 1, 'reading goes on once the batch is written');
    stream.destroy();
    await done;
  });
});

describe('Docker output reader rate', () => {
  test('reads no faster than maxBytesPerSecond', async () => {
    const bytes = Buffer.concat(Array.from({ length: 64 }, () => frame(1, `${'r'.repeat(8191)}\n`))); // 512 KiB of lines
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += 16 * 1024) chunks.push(bytes.subarray(i, i + 16 * 1024));
    let lines = 0;
    const started = performance.now();
    await readDockerOutput(Readable.from(chunks), {
      maxLineBytes: 64 * 1024,
      maxBytesPerSecond: 1024 * 1024,
      onLines: (_s, batch) => {
        lines += batch.length;
      },
    });
    const ms = performance.now() - started;
    assert.equal(lines, 64);
    // 512 KiB at 1 MiB/s: half a second at least (the last chunk is not waited for)
    assert.ok(ms >= 450, `read in ${ms.toFixed(0)} ms`);
  });
});

describe('Docker output reader rate after a quiet spell', () => {
  test('a build quiet for a while earns at most one second of output at full speed', async () => {
    const line = frame(1, `${'q'.repeat(8191)}\n`); // 8 KiB
    const stream = new Readable({ read() {} });
    let lines = 0;
    const started = performance.now();
    const done = readDockerOutput(stream, {
      maxLineBytes: 64 * 1024,
      maxBytesPerSecond: 256 * 1024,
      onLines: (_s, batch) => {
        lines += batch.length;
      },
    });
    stream.push(line);
    await new Promise((r) => setTimeout(r, 1500)); // quiet: 1.5 s of allowance unused
    const burst = performance.now();
    for (let i = 0; i < 96; i++) stream.push(line); // 768 KiB: one second of credit, then two at the rate
    stream.push(null);
    await done;
    assert.equal(lines, 97);
    const ms = performance.now() - burst;
    // with the whole quiet spell as credit it would take about 1.5 s; capped at 1 s of credit, about 2 s
    assert.ok(ms >= 1700, `the burst was read in ${ms.toFixed(0)} ms (${(performance.now() - started).toFixed(0)} ms in all)`);
  });
});
