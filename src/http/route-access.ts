import { createHash, timingSafeEqual } from 'node:crypto';
import type Router from '@koa/router';
import type Koa from 'koa';
import type { Middleware } from 'koa';
import { AppError } from '../errors.js';
import type { PageAuth } from './page-auth.js';

/**
 * Who may call a route (DESIGN §10: every route declares one; deny by default):
 * - `open`: anyone. Webhooks (they check their own signature), `/healthz`, `/metrics`,
 *   badges, static assets and artifacts by digest (unguessable).
 * - `protected`: with `pages.credentials` set, HTTP Basic with those credentials, or
 *   `Authorization: Bearer <api.token>` (so the CLI and scripts read with the one token they
 *   hold); without `pages.credentials`, anyone.
 * - `token`: `Authorization: Bearer <api.token>` only; 403 while no token is configured.
 * - `worker`: `Authorization: Bearer <token of a worker in dispatch.workers>` only (build
 *   workers: heartbeats, artifact uploads); the worker's id is put in `ctx.state.workerId`.
 *   Anything else, also while no worker is configured, gets 401.
 */
export type RouteAccess = 'open' | 'protected' | 'token' | 'worker';

/** Every access level, in the order above. */
export const ROUTE_ACCESS: readonly RouteAccess[] = ['open', 'protected', 'token', 'worker'];

/** Koa middleware that lets a request through only with the access it names: the first middleware of a route. */
export type AccessGuard = Middleware & { readonly access: RouteAccess };

/** One guard per access level, made once per app; every route starts with one of them (see {@link assertRoutesGuarded}). */
export type RouteGuards = Readonly<Record<RouteAccess, AccessGuard>>;

/** One route as a router holds it, with the access its first middleware declares (null: none). */
export interface DeclaredRoute {
  /** HTTP methods, upper case; a GET route also answers HEAD */
  methods: readonly string[];
  /** the path template (`/api/builds/:id`) or the RegExp the route matches */
  path: string | RegExp;
  access: RouteAccess | null;
}

const sha256 = (value: string) => createHash('sha256').update(value, 'utf8').digest();

/** The token of an `Authorization: Bearer <token>` header (RFC 6750), or null. */
function bearerToken(header: string): string | null {
  return /^Bearer\s+(\S+)$/i.exec(header)?.[1] ?? null;
}

function guard(access: RouteAccess, middleware: Middleware): AccessGuard {
  return Object.assign(middleware, { access });
}

/**
 * Makes the guards of one app. `token` is `api.token` (undefined: token routes answer
 * 403); tokens are compared in constant time through their sha256. A refused request gets
 * 401 `UNAUTHORIZED` with a `WWW-Authenticate` challenge (Basic for protected routes, Bearer
 * for token routes), thrown as an AppError for the error handler to answer.
 */
export function createRouteGuards(options: {
  pageAuth: Pick<PageAuth, 'allowsRequest' | 'challenge'>;
  token: string | undefined;
  /** worker id → its token (config `dispatch.workers`) */
  workerTokens?: Readonly<Record<string, string>>;
}): RouteGuards {
  const { pageAuth } = options;
  const expected = options.token === undefined ? null : sha256(options.token);
  const workers = Object.entries(options.workerTokens ?? {}).map(([id, token]) => ({ id, digest: sha256(token) }));
  /** The worker whose token the header carries, or null; every token is compared, in constant time each. */
  const workerOf = (header: string): string | null => {
    const given = bearerToken(header);
    if (given === null) return null;
    const digest = sha256(given);
    let found: string | null = null;
    for (const worker of workers) if (timingSafeEqual(digest, worker.digest)) found = worker.id;
    return found;
  };
  const hasToken = (header: string): boolean => {
    const given = bearerToken(header);
    return expected !== null && given !== null && timingSafeEqual(sha256(given), expected);
  };
  return Object.freeze({
    open: guard('open', async (_ctx, next) => {
      await next();
    }),
    protected: guard('protected', async (ctx, next) => {
      const header = ctx.get('Authorization');
      if (!pageAuth.allowsRequest(header) && !hasToken(header)) {
        throw new AppError('UNAUTHORIZED', 'this needs the page credentials (pages.credentials) or the API token (api.token)', {
          status: 401,
          headers: { 'WWW-Authenticate': pageAuth.challenge },
        });
      }
      await next();
    }),
    worker: guard('worker', async (ctx, next) => {
      const id = workerOf(ctx.get('Authorization'));
      if (id === null) {
        throw new AppError('UNAUTHORIZED', workers.length === 0 ? 'no build workers are configured (dispatch.workers)' : 'a valid worker token is required', {
          status: 401,
          headers: { 'WWW-Authenticate': 'Bearer realm="autobuilder-workers"' },
        });
      }
      (ctx.state as { workerId?: string }).workerId = id;
      await next();
    }),
    token: guard('token', async (ctx, next) => {
      if (expected === null) throw new AppError('FORBIDDEN', 'write endpoints are disabled: set api.token (or AUTOBUILDER_API_TOKEN)', { status: 403 });
      if (!hasToken(ctx.get('Authorization'))) {
        throw new AppError('UNAUTHORIZED', 'a valid bearer token is required', { status: 401, headers: { 'WWW-Authenticate': 'Bearer realm="autobuilder"' } });
      }
      await next();
    }),
  });
}

/** The routers mounted on `app` (each `router.routes()` middleware carries its router). */
function routersOf(app: Koa): Router[] {
  const routers: Router[] = [];
  for (const middleware of app.middleware) {
    const router: unknown = (middleware as { router?: unknown }).router;
    if (typeof router === 'object' && router !== null && 'stack' in router && Array.isArray(router.stack)) routers.push(router as Router);
  }
  return routers;
}

const isAccess = (value: unknown): value is RouteAccess => typeof value === 'string' && (ROUTE_ACCESS as readonly string[]).includes(value);

/** Every route of every router mounted on `app`, in mounting order, with its declared access. */
export function listRoutes(app: Koa): DeclaredRoute[] {
  return routersOf(app).flatMap((router) =>
    router.stack.map((layer) => {
      const declared: unknown = (layer.stack[0] as { access?: unknown } | undefined)?.access;
      return { methods: [...layer.methods], path: layer.path, access: isAccess(declared) ? declared : null };
    }),
  );
}

/**
 * Refuses an app with a route that does not start with one of `guards` (a route without a
 * declared access, a `router.use()` layer, a param middleware that would run before the
 * guard, or a guard of another app): throws AppError `INTERNAL` naming every such route, so
 * the server does not start with a route nobody decided the access of.
 */
export function assertRoutesGuarded(app: Koa, guards: RouteGuards): void {
  const known = new Set<unknown>(Object.values(guards));
  const unguarded = routersOf(app).flatMap((router) =>
    router.stack.filter((layer) => !known.has(layer.stack[0])).map((layer) => `${layer.methods.join(',') || 'USE'} ${String(layer.path)}`),
  );
  if (unguarded.length > 0) {
    throw new AppError('INTERNAL', `every route must start with access.open, access.protected or access.token; these do not: ${unguarded.join('; ')}`);
  }
}
