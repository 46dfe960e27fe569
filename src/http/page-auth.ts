import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/** A user name and password for HTTP Basic authentication (RFC 7617). */
export interface PageCredentials {
  username: string;
  password: string;
}

/**
 * Who may see the pages, the reads behind them and the monitor's socket. Which routes need it
 * is said by each route (`protected`, see route-access.ts), never by matching paths here. The
 * routes that never ask for it are the `open` ones: `POST /hooks/github` (its signature is
 * the check), `/healthz`, `/metrics`, the badges (`/badge/…svg`), the static `/assets/:name`
 * and artifacts by digest (`/api/artifacts/:digest`, unguessable); the writes (`token`) need
 * the API token instead.
 */
export interface PageAuth {
  /** True when an `Authorization` header carries the page credentials; always true when none are configured. */
  allowsRequest(authorization: string): boolean;
  /** The `WWW-Authenticate` challenge of a refused request: `Basic realm="…", charset="UTF-8"`. */
  challenge: string;
  /** The token pages hand to their socket.io client (`auth.token`); null when no credentials are set. */
  socketToken: string | null;
  /** True when a socket.io handshake with these headers and `auth` payload may connect. */
  allowsSocket(headers: IncomingHttpHeaders, auth: unknown): boolean;
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
 * Creates the page guard. Without `credentials` every request is allowed and `socketToken` is
 * null; with them, a request needs HTTP Basic credentials (RFC 7617), and a socket.io handshake
 * needs the same header or the per-process token the (authenticated) pages embed.
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
    challenge: `Basic realm="${realm}", charset="UTF-8"`,
    allowsRequest: valid,
    allowsSocket(headers, auth) {
      if (credentials === undefined || socketToken === null) return true;
      const token = typeof auth === 'object' && auth !== null && 'token' in auth && typeof auth.token === 'string' ? auth.token : null;
      if (token !== null && same(token, socketToken)) return true;
      return headers.authorization !== undefined && valid(headers.authorization);
    },
  };
}
