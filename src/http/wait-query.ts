import type { Context } from 'koa';
import { AppError } from '../errors.js';

/** The longest wait a client may ask for with `?wait=`, in seconds (one hour). */
export const MAX_WAIT_SECONDS = 3600;

const SECONDS = /^\d{1,4}(\.\d{1,3})?$/;

/**
 * Reads `?wait=SECONDS` (decimal seconds, 0 to {@link MAX_WAIT_SECONDS}, at most 3
 * decimals) as milliseconds; null when the query has no `wait`.
 * @throws AppError `BAD_REQUEST` (422) for anything else, given twice included
 */
export function parseWaitMs(ctx: Pick<Context, 'query'>): number | null {
  const value = ctx.query['wait'];
  if (value === undefined) return null;
  const seconds = typeof value === 'string' && SECONDS.test(value) ? Number(value) : Number.NaN;
  if (!(seconds >= 0 && seconds <= MAX_WAIT_SECONDS)) {
    throw new AppError('BAD_REQUEST', `wait is a number of seconds from 0 to ${MAX_WAIT_SECONDS}, e.g. ?wait=600`, { status: 422 });
  }
  return Math.round(seconds * 1000);
}

/** A signal that aborts when the client closes the connection (or the answer has been sent). */
export function toClosedSignal(ctx: Pick<Context, 'res'>): AbortSignal {
  const controller = new AbortController();
  ctx.res.once('close', () => controller.abort());
  return controller.signal;
}
