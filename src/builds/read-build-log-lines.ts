import { open } from 'node:fs/promises';
import { NEWLINE, STRIDE, totalLines, type LineIndex } from './build-log-index.js';
import { toShownLine } from './line-splitter.js';

/** Lines longer than this are cut in `BuildLogs.readLines` answers (the raw log has them whole). */
export const MAX_LINE_BYTES = 64 * 1024;
/** Most lines one answer holds. */
const MAX_COUNT = 10_000;
/** About the most bytes of lines one answer holds: it ends after the line that passes this. */
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;
/** Bytes read from the file at a time. */
const CHUNK = 256 * 1024;

/** A run of whole lines read from a log by line number (see `BuildLogs.readLines`). */
export interface LogLines {
  /** 1-based number of the first line in `lines` */
  start: number;
  /** the lines without their newlines; a line over 64 KiB is cut and ends in a marker */
  lines: string[];
  /** how many lines the log had when it was read */
  total: number;
  /** byte offset where `lines` start, and where they end (after the last newline) */
  startOffset: number;
  endOffset: number;
  /** bytes in the log when it was read */
  size: number;
  /** false while a writer in this process still appends to the log */
  complete: boolean;
}

/** Which lines {@link readBuildLogLines} returns: from line `start` (1-based) on, or the last `tail`. */
export type LineQuery = { start: number; count: number } | { tail: number };

/**
 * Whole lines of the log file at `path` by line number, found through its sparse line index
 * (`found.index`, as of the call: a live writer may append meanwhile, the answer is as of
 * then), so a window anywhere in a 100 MB log costs a few reads. At most `count` (≤ 10,000)
 * lines and about 4 MiB; a line over {@link MAX_LINE_BYTES} is cut and ends in a marker.
 */
export async function readBuildLogLines(path: string, found: { index: LineIndex; live: boolean }, query: LineQuery): Promise<LogLines> {
  // a copy of the numbers: a live writer may append while we read, and we answer as of now
  const { size, marks } = found.index;
  const total = totalLines(found.index);
  const count = Math.max(0, Math.min(MAX_COUNT, 'tail' in query ? query.tail : query.count));
  const start = 'tail' in query ? Math.max(1, total - count + 1) : Math.max(1, Math.floor(query.start));
  const answer: LogLines = { start, lines: [], total, startOffset: size, endOffset: size, size, complete: !found.live };
  if (start > total || count === 0) return answer;
  const k = Math.min(Math.floor((start - 1) / STRIDE), marks.length - 1);
  let line = k * STRIDE + 1;
  let pos = marks[k] ?? 0;
  let lineStart = pos;
  // the current line: its length, and the part of it that will be shown
  let parts: Buffer[] = [];
  let kept = 0;
  let length = 0;
  let bytes = 0;
  let full = false;
  const addPiece = (piece: Buffer): void => {
    length += piece.length;
    if (line >= start && kept < MAX_LINE_BYTES && piece.length > 0) {
      const shown = Buffer.from(piece.subarray(0, MAX_LINE_BYTES - kept));
      parts.push(shown);
      kept += shown.length;
    }
  };
  /** Ends the current line at `end` (the offset after its newline); true when the answer is full. */
  const endLine = (end: number): boolean => {
    if (line >= start) {
      if (answer.lines.length === 0) answer.startOffset = lineStart;
      const text = Buffer.concat(parts, kept).toString('utf8');
      answer.lines.push(toShownLine({ text, omitted: Math.max(0, length - MAX_LINE_BYTES) }));
      answer.endOffset = end;
      bytes += kept;
    }
    parts = [];
    kept = 0;
    length = 0;
    line += 1;
    lineStart = end;
    return answer.lines.length >= count || bytes >= MAX_ANSWER_BYTES;
  };
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(CHUNK);
    while (pos < size && !full) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(CHUNK, size - pos), pos);
      if (bytesRead === 0) break;
      const view = buffer.subarray(0, bytesRead);
      let from = 0;
      for (let nl = view.indexOf(NEWLINE); nl !== -1; nl = view.indexOf(NEWLINE, from)) {
        addPiece(view.subarray(from, nl));
        from = nl + 1;
        if (endLine(pos + from)) {
          full = true;
          break;
        }
      }
      if (!full) addPiece(view.subarray(from));
      pos += bytesRead;
    }
    // a last line without a newline (a log some other writer left unfinished)
    if (!full && pos >= size && length > 0) endLine(size);
  } finally {
    await handle.close();
  }
  if (answer.lines.length === 0) answer.startOffset = answer.endOffset = size;
  return answer;
}
