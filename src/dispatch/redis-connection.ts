import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { AppError, toMessage } from '../errors.js';

/** Port of a Redis URL that names none, for `redis:` and `rediss:` alike. */
const DEFAULT_PORT = 6379;

/** Where {@link toRedisOptions} finds what the URL does not carry. */
export interface RedisUrlOptions {
  /** PEM file of the CA a `rediss:` server's certificate is checked against (default: Node's trusted CAs) */
  caPath?: string;
}

/**
 * Connection options read from a Redis URL, assignable both to ioredis's `RedisOptions`
 * (`new Redis(options)`) and to BullMQ's `connection`. A precise type rather than ioredis's
 * `RedisOptions`, which neither `new Redis()` (its `replyMapping` generic) nor BullMQ (its
 * optional properties) accepts under `exactOptionalPropertyTypes`.
 */
export interface RedisClientOptions {
  /** host name or IP address (IPv6 without brackets) */
  host: string;
  /** TCP port */
  port: number;
  /** database number */
  db: number;
  /** ACL user (Redis 6+); absent means `default` */
  username?: string;
  password?: string;
  /** present for `rediss:` only */
  tls?: { ca?: Buffer; servername?: string };
  /** `null`: a command waits out a reconnect instead of failing (BullMQ requires it of workers) */
  maxRetriesPerRequest: null;
}

/**
 * ioredis options (also BullMQ's `connection`) from a Redis URL,
 * `redis[s]://[[user]:password@]host[:port][/db]`: user name and password percent-decoded,
 * `db` a non-negative integer (default 0), port 6379 unless given, an IPv6 host in brackets,
 * TLS (with the CA read from `caPath` once, now) for `rediss:`. `maxRetriesPerRequest` is
 * `null`, which BullMQ requires of a worker's connection: a command waits out a reconnect
 * instead of failing.
 *
 * @throws AppError `CONFIG_INVALID` when the URL does not parse, is not `redis:` or `rediss:`,
 *   has no host, a user name without a password, a query or fragment, or a db that is not a
 *   number; when `caPath` is given with a `redis:` URL or cannot be read. The message shows the
 *   URL with its password replaced (see {@link describeRedisUrl}).
 */
export function toRedisOptions(url: string, options: RedisUrlOptions = {}): RedisClientOptions {
  const parsed = parseRedisUrl(url);
  const shown = describeRedisUrl(url);
  const invalid = (problem: string, cause?: unknown) =>
    new AppError('CONFIG_INVALID', `Redis URL ${shown}: ${problem}`, cause === undefined ? { status: 500 } : { status: 500, cause });

  const tls = parsed.protocol === 'rediss:';
  if (parsed.hostname === '') throw invalid('no host');
  if (parsed.search !== '' || parsed.hash !== '') throw invalid('query parameters and fragments are not supported');
  const decode = (part: string, what: string) => {
    try {
      return decodeURIComponent(part);
    } catch {
      throw invalid(`the ${what} is not valid percent-encoding`);
    }
  };
  const username = decode(parsed.username, 'user name');
  const password = decode(parsed.password, 'password');
  // ioredis sends AUTH only with a password: a lone user name would be dropped without a word
  if (username !== '' && password === '') throw invalid('a user name needs a password (redis://user:password@host)');
  const dbText = parsed.pathname.replace(/^\//, '');
  if (dbText !== '' && !/^\d{1,5}$/.test(dbText)) throw invalid(`the path must be a database number, not "/${dbText}"`);
  if (options.caPath !== undefined && !tls) throw invalid('a CA file is given but the URL is not rediss:');

  // WHATWG URL keeps the brackets of an IPv6 host: net.connect wants the bare address
  const host = parsed.hostname.startsWith('[') ? parsed.hostname.slice(1, -1) : parsed.hostname;
  const result: RedisClientOptions = {
    host,
    port: parsed.port === '' ? DEFAULT_PORT : Number(parsed.port),
    db: dbText === '' ? 0 : Number(dbText),
    maxRetriesPerRequest: null,
  };
  if (username !== '') result.username = username;
  if (password !== '') result.password = password;
  if (tls) {
    let ca: Buffer | undefined;
    if (options.caPath !== undefined) {
      try {
        ca = readFileSync(options.caPath);
      } catch (err) {
        throw invalid(`cannot read the CA file ${options.caPath}: ${toMessage(err)}`, err);
      }
    }
    result.tls = {
      ...(ca === undefined ? {} : { ca }),
      // SNI carries host names only (RFC 6066 §3); for an IP address Node checks the IP SANs
      ...(isIP(host) === 0 ? { servername: host } : {}),
    };
  }
  return result;
}

/**
 * The Redis URL for logs and error messages: its password (if any) replaced by `***`, as is
 * a query or fragment (which {@link toRedisOptions} refuses, but which may hold a secret),
 * everything else as given. Never throws: a string that does not parse as a `redis:` or
 * `rediss:` URL with a host comes back as `(invalid Redis URL)`, since it may hold a password
 * anywhere.
 */
export function describeRedisUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = parseRedisUrl(url);
  } catch {
    return '(invalid Redis URL)';
  }
  if (parsed.hostname === '') return '(invalid Redis URL)';
  if (parsed.password !== '') parsed.password = '***';
  if (parsed.search !== '') parsed.search = '***';
  if (parsed.hash !== '') parsed.hash = '***';
  return parsed.href;
}

/** `url` parsed, when it is a `redis:` or `rediss:` URL; the error message never shows it. */
function parseRedisUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // no `cause`: Node's TypeError carries the whole URL, password included, as `input`
    throw new AppError('CONFIG_INVALID', 'Redis URL does not parse (expected redis[s]://[[user]:password@]host[:port][/db])', { status: 500 });
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new AppError('CONFIG_INVALID', `Redis URL must start with redis:// or rediss://, not ${parsed.protocol}//`, { status: 500 });
  }
  return parsed;
}
