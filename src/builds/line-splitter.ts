/** One line cut from a byte stream by a {@link LineSplitter}. */
export interface SplitLine {
  /** the line as UTF-8 text, without its newline: at most `maxLineBytes` bytes of it */
  text: string;
  /** bytes of the line left out of `text` (`truncate` mode only; 0 otherwise) */
  omitted: number;
  /** false when the line was cut at `maxLineBytes` and goes on in the next one (`split` mode) */
  complete: boolean;
  /** byte offset in the stream after this line and its newline */
  end: number;
}

/**
 * Cuts a stream of bytes into lines with bounded memory: whatever the stream holds, at most
 * `maxLineBytes` (+ 3 bytes of a cut character) of one line are kept at a time, and every
 * byte is looked at once (the work is linear in the bytes pushed).
 */
export interface LineSplitter {
  /** The lines `chunk` completes (or cuts), in order; bytes after the last newline wait. */
  push(chunk: Buffer): SplitLine[];
  /** What is left after the last newline, as a last line; null when nothing is. */
  flush(): SplitLine | null;
}

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

/** Bytes at the end of `bytes` that start a UTF-8 character they do not finish (0 to 3). */
function unfinishedCharacter(bytes: Buffer): number {
  for (let back = 1; back <= Math.min(3, bytes.length); back++) {
    const byte = bytes[bytes.length - back] ?? 0;
    if ((byte & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const needs = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return needs > back ? back : 0;
  }
  return 0;
}

/**
 * Creates a line splitter. Offsets start at `offset` (the stream's position of the first
 * byte pushed). A line longer than `maxLineBytes` is, by `overflow`:
 * - `split`: cut into lines of at most `maxLineBytes` bytes (never inside a UTF-8
 *   character), all but the last with `complete: false`: no byte is lost (build output);
 * - `truncate`: kept to its first `maxLineBytes` bytes, the rest counted in `omitted` (a
 *   reader showing a log).
 * `stripCarriageReturn` drops the `\r` of a `\r\n` line end.
 */
export function createLineSplitter(options: {
  maxLineBytes: number;
  overflow: 'split' | 'truncate';
  offset?: number;
  stripCarriageReturn?: boolean;
}): LineSplitter {
  const { maxLineBytes, overflow } = options;
  const strip = options.stripCarriageReturn === true;
  /** the kept bytes of the current line, copied (callers may reuse their chunk buffers) */
  let parts: Buffer[] = [];
  let kept = 0;
  let omitted = 0;
  /** stream offset of the next byte to be pushed */
  let position = options.offset ?? 0;

  const take = (): Buffer => {
    const bytes = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, kept);
    parts = [];
    kept = 0;
    return bytes;
  };

  /** Adds a piece of the current line (no newline in it) ending at stream offset `end`; returns the lines it cut. */
  function add(piece: Buffer, end: number, out: SplitLine[]): void {
    let rest = piece;
    while (rest.length > 0) {
      const room = maxLineBytes - kept;
      if (rest.length <= room) {
        parts.push(Buffer.from(rest));
        kept += rest.length;
        return;
      }
      if (overflow === 'truncate') {
        if (room > 0) {
          parts.push(Buffer.from(rest.subarray(0, room)));
          kept += room;
        }
        omitted += rest.length - room;
        return;
      }
      parts.push(Buffer.from(rest.subarray(0, room)));
      kept += room;
      rest = rest.subarray(room);
      const line = take();
      const carry = unfinishedCharacter(line);
      const text = line.subarray(0, line.length - carry);
      if (carry > 0) {
        parts.push(Buffer.from(line.subarray(line.length - carry)));
        kept = carry;
      }
      out.push({ text: text.toString('utf8'), omitted: 0, complete: false, end: end - rest.length - carry });
    }
  }

  function endLine(end: number): SplitLine {
    let bytes = take();
    if (strip && omitted === 0 && bytes[bytes.length - 1] === CARRIAGE_RETURN) bytes = bytes.subarray(0, bytes.length - 1);
    const line = { text: bytes.toString('utf8'), omitted, complete: true, end };
    omitted = 0;
    return line;
  }

  return {
    push(chunk) {
      const out: SplitLine[] = [];
      const base = position;
      position += chunk.length;
      let from = 0;
      for (let nl = chunk.indexOf(NEWLINE); nl !== -1; nl = chunk.indexOf(NEWLINE, from)) {
        add(chunk.subarray(from, nl), base + nl, out);
        out.push(endLine(base + nl + 1));
        from = nl + 1;
      }
      add(chunk.subarray(from), position, out);
      return out;
    },
    flush() {
      if (kept === 0 && omitted === 0) return null;
      return endLine(position);
    },
  };
}

/** A line as a log reader shows it: cut lines end in a marker that says how much is left out. */
export function toShownLine(line: Pick<SplitLine, 'text' | 'omitted'>): string {
  return line.omitted > 0 ? `${line.text} … [${line.omitted} more bytes in the raw log]` : line.text;
}
