import type { Middleware } from 'koa';
import { isAppError } from '../errors.js';
import type { Logger } from '../logger.js';

/** The one JSON error shape of the HTTP API: `{ error: { code, message } }`. */
export interface ErrorBody {
  error: { code: string; message: string };
}

/**
 * Koa middleware that turns every thrown error into `{ error: { code, message } }` with
 * the error's status. Only AppErrors marked `expose` show their message; anything else is a
 * 500 `INTERNAL` whose details go to the app log, never to the client (no stack traces).
 */
export function errorHandler(log: Logger): Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        ctx.status = 404;
        ctx.body = { error: { code: 'NOT_FOUND', message: `no route for ${ctx.method} ${ctx.path}` } } satisfies ErrorBody;
      }
    } catch (err) {
      const known = isAppError(err);
      const status = known ? err.status : 500;
      if (!known || (status >= 500 && status !== 503)) log.error({ err, method: ctx.method, path: ctx.path }, 'request failed');
      ctx.status = status;
      if (known) ctx.set(err.headers);
      ctx.body = {
        error: { code: known ? err.code : 'INTERNAL', message: known && err.expose ? err.message : 'internal error' },
      } satisfies ErrorBody;
    }
  };
}
