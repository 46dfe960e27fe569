import type { z } from 'zod';
import { AppError } from '../errors.js';
import { readBody } from '../webhooks/read-body.js';

/**
 * Reads a JSON request body of at most `maxBytes` (default 64 KiB) and checks it against
 * `schema`; an empty body is `{}`.
 * @throws AppError `BAD_REQUEST` (400) when it is not JSON or does not match, naming each problem; `PAYLOAD_TOO_LARGE` (413) from readBody
 */
export async function jsonBody<T extends z.ZodType>(req: Parameters<typeof readBody>[0], schema: T, maxBytes = 64 * 1024): Promise<z.infer<T>> {
  const raw = await readBody(req, maxBytes);
  let data: unknown = {};
  if (raw.length > 0) {
    try {
      data = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new AppError('BAD_REQUEST', 'the body is not JSON', { status: 400 });
    }
  }
  const parsed = schema.safeParse(data);
  if (!parsed.success)
    throw new AppError('BAD_REQUEST', parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '), { status: 400 });
  return parsed.data;
}
