import type { Readable } from 'node:stream';
import { createLineSplitter, type SplitLine } from '../builds/line-splitter.js';

/** Which output stream a line came from. */
export type OutputStream = 'stdout' | 'stderr';

/** Size of the header before each frame of a multiplexed Docker stream. */
const HEADER_BYTES = 8;

/**
 * Reads the multiplexed output of a container attached without a TTY, as Docker frames it
 * (Docker Engine API, ContainerAttach, "Stream format": https://docs.docker.com/reference/api/engine/ —
 * an 8-byte header, `[stream, 0, 0, 0, size (uint32, big-endian)]`, then `size` bytes),
 * and calls `onLines` with the lines of stdout or stderr each piece of a frame completes,
 * lines over `maxLineBytes` cut into several (see `createLineSplitter`'s `split`).
 *
 * Back-pressure: the stream is read as an async iterator, one chunk at a time, and a chunk
 * is handled whole (each `onLines` call awaited: the log is written) before the next is
 * read, so nothing piles up in this process: a container that prints faster than its
 * lines are stored waits in its own `write`. Memory is bounded by one chunk and one line
 * per stream, however long a line is.
 *
 * `maxBytesPerSecond` bounds the rate output is read at (the container waits, as above), so
 * a flood cannot take the server's CPU and disk from everything else.
 *
 * Resolves when the stream ends or fails (a destroyed stream is the end of the output, not
 * an error); frames of other streams (stdin echo) are skipped.
 */
export async function readDockerOutput(
  stream: Readable,
  options: { maxLineBytes: number; maxBytesPerSecond?: number | undefined; onLines(stream: OutputStream, lines: readonly SplitLine[]): void | Promise<void> },
): Promise<void> {
  const splitters = {
    stdout: createLineSplitter({ maxLineBytes: options.maxLineBytes, overflow: 'split', stripCarriageReturn: true }),
    stderr: createLineSplitter({ maxLineBytes: options.maxLineBytes, overflow: 'split', stripCarriageReturn: true }),
  };
  const header = Buffer.alloc(HEADER_BYTES);
  let headerBytes = 0;
  /** the stream the current frame belongs to (null: skipped), and its bytes not read yet */
  let current: OutputStream | null = null;
  let remaining = 0;
  const emit = async (name: OutputStream, lines: readonly SplitLine[]): Promise<void> => {
    if (lines.length > 0) await options.onLines(name, lines);
  };
  /** when the rate's allowance starts, and the bytes read since the stream's start */
  let started = performance.now();
  let read = 0;
  try {
    for await (const data of stream) {
      const chunk = data as Buffer;
      const rate = options.maxBytesPerSecond;
      // a quiet spell earns at most one second of output at full speed, not a burst of its length
      if (rate !== undefined) started = Math.max(started, performance.now() - ((read + rate) / rate) * 1000);
      read += chunk.length;
      let at = 0;
      while (at < chunk.length) {
        if (remaining === 0) {
          const n = Math.min(HEADER_BYTES - headerBytes, chunk.length - at);
          chunk.copy(header, headerBytes, at, at + n);
          headerBytes += n;
          at += n;
          if (headerBytes < HEADER_BYTES) break;
          headerBytes = 0;
          const type = header[0];
          current = type === 1 ? 'stdout' : type === 2 ? 'stderr' : null;
          remaining = header.readUInt32BE(4);
          continue;
        }
        const n = Math.min(remaining, chunk.length - at);
        if (current !== null) await emit(current, splitters[current].push(chunk.subarray(at, at + n)));
        remaining -= n;
        at += n;
      }
      // ahead of the allowed rate: wait until it is caught up; else let waiting I/O (webhooks,
      // pages) run before the next chunk: a flood shares the loop
      const ahead = rate === undefined ? 0 : (read / rate) * 1000 - (performance.now() - started);
      await new Promise((resolve) => (ahead >= 1 ? setTimeout(resolve, ahead) : setImmediate(resolve)));
    }
  } catch {
    // a destroyed or reset stream ends the output; the exit code says how the build went.
    // Destroyed here too, so a container never waits on output nobody reads.
    stream.destroy();
  }
  for (const name of ['stdout', 'stderr'] as const) {
    const last = splitters[name].flush();
    if (last !== null) await emit(name, [last]).catch(() => undefined);
  }
}
