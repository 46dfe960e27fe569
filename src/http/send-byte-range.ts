import { createReadStream } from 'node:fs';
import type { Context } from 'koa';
import parseRange from 'range-parser';
import { AppError } from '../errors.js';

/**
 * Answers the request's one `Range` of bytes (RFC 9110 §14) over the first `size` bytes of
 * the file at `path`: 206 with `Content-Range` and a stream of just those bytes, and returns
 * true. Returns false, sending nothing, when there is no `Range` header or it asks for
 * something else than one satisfiable byte range (several ranges, another unit, a malformed
 * header): the caller then sends the whole body.
 * @throws AppError `BAD_REQUEST` with status 416 when no range is satisfiable (`Content-Range` then names only the size)
 */
export function sendByteRange(ctx: Context, file: { path: string; size: number }): boolean {
  const header = ctx.get('Range');
  if (header === '') return false;
  const ranges = parseRange(file.size, header, { combine: true });
  if (ranges === -1) {
    ctx.set('Content-Range', `bytes */${file.size}`);
    throw new AppError('BAD_REQUEST', `range not satisfiable for ${file.size} bytes`, { status: 416 });
  }
  const range = ranges !== -2 && ranges.type === 'bytes' && ranges.length === 1 ? ranges[0] : undefined;
  if (range === undefined) return false;
  ctx.status = 206;
  ctx.set('Content-Range', `bytes ${range.start}-${range.end}/${file.size}`);
  ctx.length = range.end - range.start + 1;
  ctx.body = createReadStream(file.path, { start: range.start, end: range.end });
  return true;
}
