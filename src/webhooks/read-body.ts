import type { IncomingMessage } from 'node:http';
import { AppError } from '../errors.js';

/** GitHub caps webhook payloads at 25 MB (https://docs.github.com/webhooks/webhook-events-and-payloads). */
export const MAX_WEBHOOK_BYTES = 25 * 1024 * 1024;

/**
 * Reads a request body as raw bytes, up to `limit` bytes. A declared or actual body over
 * the limit stops reading at once (the rest is never buffered).
 * @throws AppError `PAYLOAD_TOO_LARGE` (413)
 */
export async function readBody(req: IncomingMessage, limit: number = MAX_WEBHOOK_BYTES): Promise<Buffer> {
  const tooLarge = () => new AppError('PAYLOAD_TOO_LARGE', `request body over ${limit} bytes`, { status: 413 });
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      req.pause();
      throw tooLarge();
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, size);
}
