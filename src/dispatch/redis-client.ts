import { Redis } from 'ioredis';
import { toRedisOptions } from './redis-connection.js';

/**
 * An ioredis client for `url` (see {@link toRedisOptions}; `caPath` for a `rediss:` server
 * signed by a private CA). It connects at once and reconnects by itself; commands wait out a
 * reconnect (`maxRetriesPerRequest: null`, which BullMQ needs). Errors are given to `onError`
 * (a client without an error listener would print them).
 * @throws AppError `CONFIG_INVALID` for a URL {@link toRedisOptions} refuses
 */
export function connectRedis(url: string, options: { caPath?: string | undefined; onError: (err: Error) => void }): Redis {
  const connection = toRedisOptions(url, options.caPath === undefined ? {} : { caPath: options.caPath });
  const client = new Redis(connection);
  client.on('error', options.onError);
  return client;
}
