import { open } from 'node:fs/promises';

/** Every STRIDE lines the index remembers where a line starts. */
export const STRIDE = 1024;
/** The byte that ends a line. */
export const NEWLINE = 0x0a;

/** Sparse line index: `marks[k]` is the byte offset where line `k * STRIDE + 1` starts. */
export interface LineIndex {
  /** bytes covered */
  size: number;
  /** newline-terminated lines in those bytes */
  lines: number;
  /** offset after the last newline */
  lastEnd: number;
  marks: number[];
}

/** The index of an empty log. */
export function createLineIndex(): LineIndex {
  return { size: 0, lines: 0, lastEnd: 0, marks: [0] };
}

/** Extends `index` over `bytes`, which sit at `index.size` in the log. */
export function indexBytes(index: LineIndex, bytes: Buffer): void {
  let at = bytes.indexOf(NEWLINE);
  while (at !== -1) {
    index.lines += 1;
    index.lastEnd = index.size + at + 1;
    if (index.lines % STRIDE === 0) index.marks.push(index.lastEnd);
    at = bytes.indexOf(NEWLINE, at + 1);
  }
  index.size += bytes.length;
}

/** Lines in the indexed bytes, counting a last line without a newline. */
export const totalLines = (index: LineIndex): number => index.lines + (index.size > index.lastEnd ? 1 : 0);

/** Extends `index` over the bytes of the file at `path` from `index.size` up to `size`, read 1 MiB at a time. */
export async function indexFile(path: string, index: LineIndex, size: number): Promise<void> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(1024 * 1024);
    while (index.size < size) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, size - index.size), index.size);
      if (bytesRead === 0) break;
      indexBytes(index, buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
}
