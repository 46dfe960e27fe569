import type { IncomingMessage } from 'node:http';
import { AppError } from '../errors.js';

/** GitHub caps webhook payloads at 25 MB (https://docs.github.com/webhooks/webhook-events-and-payloads). */
export const MAX_WEBHOOK_BYTES = 25 * 1024 * 1024;

/** How long the rest of a refused body is read and dropped before the connection is cut, in ms. */
export const LINGER_MS = 10_000;

/**
 * Reads and drops what is left of a refused request's body, for at most `LINGER_MS`, so the
 * client is still reading when the error answer arrives. Closing at once would leave unread
 * bytes on our side, and the reset that follows can destroy the answer on the client's (the
 * "lingering close" of web servers).
 */
function discardRest(req: IncomingMessage): void {
  const cut = setTimeout(() => req.socket.destroy(), LINGER_MS).unref();
  req.once('end', () => clearTimeout(cut));
  req.once('close', () => clearTimeout(cut));
  req.resume();
}

/**
 * Reads a request body as raw bytes, up to `limit` bytes. A declared or actual body over
 * the limit is never buffered: the rest is read and dropped (see {@link discardRest}).
 * @throws AppError `PAYLOAD_TOO_LARGE` (413)
 */
export async function readBody(req: IncomingMessage, limit: number = MAX_WEBHOOK_BYTES): Promise<Buffer> {
  const tooLarge = () => new AppError('PAYLOAD_TOO_LARGE', `request body over ${limit} bytes`, { status: 413 });
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) {
    discardRest(req);
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let size = 0;
  // leaving the loop early must not destroy the request: the answer still has to go out
  for await (const chunk of req.iterator({ destroyOnReturn: false })) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      discardRest(req);
      throw tooLarge();
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, size);
}
