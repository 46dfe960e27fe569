import { isIP } from 'node:net';

/**
 * Decides whether a request's `Host` header names this server. `host` is the header's raw
 * value (`name`, `name:port`, `[v6]:port`) or undefined when the request had none; the port
 * is not compared (a proxy in front may use another).
 */
export type HostGuard = (host: string | undefined) => boolean;

const WILDCARDS = new Set(['0.0.0.0', '::', '[::]']);

/** `host` without port, brackets and trailing dot, lower case; null when it is not a host. */
export function toHostName(host: string): string | null {
  const value = host.trim().toLowerCase();
  const bracketed = /^\[([0-9a-f:.]+)\](?::\d+)?$/.exec(value);
  if (bracketed !== null) return bracketed[1] ?? null;
  if (isIP(value) === 6) return value; // a bare IPv6 literal (config values, never a valid Host)
  const named = /^([^\s/:@[\]]+?)\.?(?::\d+)?$/.exec(value);
  return named?.[1] ?? null;
}

const isLoopback = (name: string): boolean => name === 'localhost' || name === '::1' || (isIP(name) === 4 && name.startsWith('127.'));

/**
 * Creates the guard against DNS rebinding: a browser page of a hostile site whose name was
 * made to resolve to this server sends that name as `Host`, so only this server's own names
 * are allowed: the listen host, the `publicUrl` host (GitHub's webhooks come with it), the
 * hosts of `allowedOrigins` (URLs) and `allowedHosts`. Listening on a loopback address also
 * allows `localhost` and the loopback literals; listening on `0.0.0.0` or `::` allows any IP
 * literal (an IP literal is never rebound) and `localhost`. A request without `Host` (HTTP/1.0,
 * never a browser) is allowed.
 * @see https://en.wikipedia.org/wiki/DNS_rebinding
 */
export function createHostGuard(options: {
  listenHost: string;
  publicUrl?: string | undefined;
  allowedOrigins?: readonly string[];
  allowedHosts?: readonly string[];
}): HostGuard {
  const listen = options.listenHost.trim().toLowerCase();
  const wildcard = WILDCARDS.has(listen);
  const names = new Set<string>();
  const add = (host: string): void => {
    const name = toHostName(host);
    if (name !== null) names.add(name);
  };
  if (!wildcard) add(listen);
  for (const url of [options.publicUrl, ...(options.allowedOrigins ?? [])]) if (url !== undefined) add(new URL(url).host);
  for (const host of options.allowedHosts ?? []) add(host);
  const loopback = wildcard || isLoopback(toHostName(listen) ?? '');
  return (host) => {
    if (host === undefined) return true;
    const name = toHostName(host);
    if (name === null) return false;
    if (names.has(name)) return true;
    if (loopback && isLoopback(name)) return true;
    return wildcard && isIP(name) !== 0;
  };
}
