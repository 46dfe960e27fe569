import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Middleware } from 'koa';
import type { ErrorBody } from './error-handler.js';

/** A user name and password for HTTP Basic authentication (RFC 7617). */
export interface PageCredentials {
  username: string;
  password: string;
}

/** Who may see the pages, their APIs and the monitor's socket. */
export interface PageAuth {
  /** Koa middleware: a protected read without the credentials gets 401 and a Basic challenge. */
  middleware: Middleware;
  /** The token pages hand to their socket.io client (`auth.token`); null when no credentials are set. */
  socketToken: string | null;
  /** True when a socket.io handshake with these headers and `auth` payload may connect. */
  allowsSocket(headers: IncomingHttpHeaders, auth: unknown): boolean;
}

/**
 * True for the reads the page credentials protect: the pages (`GET /monitor`, `/builds/…`),
 * the build API they read (`GET /api/builds…`) and the seed's `/build/…` routes. Webhooks
 * (signed), writes (the control API has its own token), `/healthz`, `/metrics`, badges (made
 * to be embedded), static assets and artifacts by digest (unguessable) stay open.
 */
export function isProtectedRead(method: string, path: string): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false;
  return path === '/monitor' || path.startsWith('/builds/') || path === '/api/builds' || path.startsWith('/api/builds/') || path.startsWith('/build/');
}

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();
/** Constant-time equality of two strings (compared through their sha256, so lengths do not leak). */
const same = (a: string, b: string) => timingSafeEqual(digest(a), digest(b));

/** The user and password of an `Authorization: Basic …` header, or null. */
function basicCredentials(header: string | undefined): PageCredentials | null {
  const match = /^Basic +([A-Za-z0-9+/=]+) *$/i.exec(header ?? '');
  if (match === null) return null;
  const decoded = Buffer.from(match[1] ?? '', 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1 ? null : { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * Creates the page guard. Without `credentials` everything is open and `socketToken` is null;
 * with them, protected paths need HTTP Basic credentials, and a socket.io handshake needs the
 * same header or the per-process token the (authenticated) pages embed.
 */
export function createPageAuth(options: { credentials?: PageCredentials | undefined; realm?: string }): PageAuth {
  const { credentials } = options;
  const realm = options.realm ?? 'autobuilder';
  const socketToken = credentials === undefined ? null : randomBytes(32).toString('base64url');
  const valid = (header: string | undefined): boolean => {
    if (credentials === undefined) return true;
    const given = basicCredentials(header);
    // both compared, always, so timing does not tell which one was wrong
    return given !== null && [same(given.username, credentials.username), same(given.password, credentials.password)].every(Boolean);
  };
  return {
    socketToken,
    middleware: async (ctx, next) => {
      if (credentials !== undefined && isProtectedRead(ctx.method, ctx.path) && !valid(ctx.get('Authorization'))) {
        ctx.status = 401;
        ctx.set('WWW-Authenticate', `Basic realm="${realm}", charset="UTF-8"`);
        ctx.body = { error: { code: 'UNAUTHORIZED', message: 'these pages need the credentials set in the server configuration (pages.credentials)' } } satisfies ErrorBody;
        return;
      }
      await next();
    },
    allowsSocket(headers, auth) {
      if (credentials === undefined || socketToken === null) return true;
      const token = typeof auth === 'object' && auth !== null && 'token' in auth && typeof auth.token === 'string' ? auth.token : null;
      if (token !== null && same(token, socketToken)) return true;
      return headers.authorization !== undefined && valid(headers.authorization);
    },
  };
}
