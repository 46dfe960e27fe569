import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import Koa from 'koa';
import type Router from '@koa/router';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { errorHandler, type ErrorBody } from './error-handler.js';
import type { HostGuard } from './host-guard.js';

/** Seconds a client is asked to wait (`Retry-After`) while the server starts. */
export const STARTING_RETRY_AFTER_SECONDS = 2;

/**
 * The one request listener of the HTTP server, from before it listens until it closes, so
 * that every request gets an answer at once whatever the server is doing. While the server
 * starts (config fetch, orphan removal, recovery), webhooks are taken in as soon as
 * {@link StartUpGate.acceptWebhooks} gives their routes (stored durably, built once started)
 * and every other request gets 503 `STARTING` with `Retry-After`; after
 * {@link StartUpGate.open} the app answers everything. Before either, a request whose `Host`
 * the guard refuses gets 421 `HOST_NOT_ALLOWED`.
 */
export interface StartUpGate {
  /** the listener to give `http.createServer` */
  readonly listener: RequestListener;
  /** Lets webhooks in while the server starts, through these routes. */
  acceptWebhooks(routes: Router): void;
  /** Hands every later request to `app`: the server has started. */
  open(app: Koa): void;
}

/** Creates the gate; `log` gets the errors of the start-up answers (never 503s). */
export function createStartUpGate(options: { hostGuard: HostGuard; log: Logger }): StartUpGate {
  let webhooks: Koa.Middleware | null = null;
  const starting = new Koa();
  starting.proxy = false;
  starting.silent = true;
  starting.use(errorHandler(options.log));
  starting.use(async (ctx, next) => {
    if (webhooks !== null && ctx.path === '/hooks/github') return webhooks(ctx, next);
    throw new AppError('STARTING', 'autobuilder is starting; try again shortly', {
      status: 503,
      headers: { 'Retry-After': String(STARTING_RETRY_AFTER_SECONDS) },
    });
  });
  let handle: ReturnType<Koa['callback']> = starting.callback();

  const refuse = (req: IncomingMessage, res: ServerResponse): void => {
    const body: ErrorBody = {
      error: {
        code: 'HOST_NOT_ALLOWED',
        message: `this server does not answer to the host ${JSON.stringify((req.headers.host ?? '').slice(0, 100))} (see listen.allowedHosts)`,
      },
    };
    res.writeHead(421, { 'content-type': 'application/json; charset=utf-8', connection: 'close' });
    res.end(JSON.stringify(body));
  };
  return {
    listener: (req, res) => {
      if (!options.hostGuard(req.headers.host)) refuse(req, res);
      // koa answers its own errors: the promise never rejects
      else void handle(req, res);
    },
    acceptWebhooks(routes) {
      webhooks = routes.routes() as Koa.Middleware;
    },
    open(app) {
      handle = app.callback();
    },
  };
}
