import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createLineSplitter, toShownLine, type SplitLine } from './line-splitter.js';

/** Pushes `input` in chunks of `size` bytes and flushes. */
function splitAll(input: Buffer, size: number, options: Parameters<typeof createLineSplitter>[0]): SplitLine[] {
  const splitter = createLineSplitter(options);
  const out: SplitLine[] = [];
  for (let i = 0; i < input.length; i += size) out.push(...splitter.push(input.subarray(i, i + size)));
  const last = splitter.flush();
  return last === null ? out : [...out, last];
}

describe('line splitter', () => {
  test('gives whole lines with the offset after each, whatever the chunk size', () => {
    const input = Buffer.from('one\ntwo\r\n\nlast without newline');
    for (const size of [1, 2, 3, 7, 100]) {
      const lines = splitAll(input, size, { maxLineBytes: 64, overflow: 'split', offset: 10, stripCarriageReturn: true });
      assert.deepEqual(
        lines.map((l) => [l.text, l.end, l.complete]),
        [
          ['one', 14, true],
          ['two', 19, true],
          ['', 20, true],
          ['last without newline', 40, true],
        ],
        `chunks of ${size}`,
      );
    }
  });

  test('split: cuts a long line into pieces of maxLineBytes, loses no byte, never cuts a character', () => {
    const line = 'aé€😀'.repeat(100); // 1, 2, 3 and 4 bytes a character
    const input = Buffer.from(`${line}\nnext\n`);
    for (const size of [1, 5, 64, 1000]) {
      const lines = splitAll(input, size, { maxLineBytes: 16, overflow: 'split' });
      const pieces = lines.slice(0, -1);
      assert.ok(
        pieces.every((p) => Buffer.byteLength(p.text) <= 16 && !p.text.includes('\uFFFD')),
        `chunks of ${size}`,
      );
      assert.equal(pieces.map((p) => p.text).join(''), line);
      assert.deepEqual(
        pieces.map((p) => p.complete),
        pieces.map((_, i) => i === pieces.length - 1),
      );
      // each piece ends where the next starts: the offsets add up to the bytes
      assert.equal(pieces.at(-1)?.end, Buffer.byteLength(line) + 1);
      assert.equal(lines.at(-1)?.text, 'next');
    }
  });

  test('truncate: keeps maxLineBytes of a long line and counts the rest', () => {
    const input = Buffer.concat([Buffer.alloc(1000, 'x'), Buffer.from('\nshort\n')]);
    const lines = splitAll(input, 33, { maxLineBytes: 100, overflow: 'truncate' });
    assert.deepEqual(
      lines.map((l) => [l.text.length, l.omitted, l.end]),
      [
        [100, 900, 1001],
        [5, 0, 1007],
      ],
    );
    assert.equal(toShownLine(lines[0] as SplitLine), `${'x'.repeat(100)} … [900 more bytes in the raw log]`);
    assert.equal(toShownLine(lines[1] as SplitLine), 'short');
  });

  test('holds at most one line of maxLineBytes, however long the line is', () => {
    const splitter = createLineSplitter({ maxLineBytes: 1024, overflow: 'truncate' });
    const chunk = Buffer.alloc(64 * 1024, 'y');
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 1024; i++) assert.deepEqual(splitter.push(chunk), []); // 64 MiB, one line
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(grown < 8 * 1024 * 1024, `array buffers grew by ${grown} bytes`);
    assert.equal(splitter.flush()?.omitted, 64 * 1024 * 1024 - 1024);
  });
});
