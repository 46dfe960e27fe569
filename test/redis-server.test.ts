import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { after, describe, test } from 'node:test';
import { Redis, type RedisOptions } from 'ioredis';
import { toRedisOptions, type RedisUrlOptions } from '../src/dispatch/redis-connection.js';
import { startRedisServer, type RunningRedis } from './support/redis-server.js';

/**
 * Runs `use` with a client of `url` that fails at once instead of retrying, then closes it.
 * A refused connection rejects with the reason (NOAUTH, a certificate error), not with
 * ioredis's "Connection is closed" that follows it. No ready check: the first command sent is `use`'s.
 */
async function withClient<T>(
  url: string,
  use: (client: Redis) => Promise<T>,
  { protocol, ...connection }: RedisUrlOptions & Pick<RedisOptions, 'protocol'> = {},
): Promise<T> {
  const client = new Redis({
    ...toRedisOptions(url, connection),
    ...(protocol === undefined ? {} : { protocol }),
    lazyConnect: true,
    enableReadyCheck: false,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    connectTimeout: 2_000,
  });
  let reason: unknown;
  client.on('error', (err) => {
    reason ??= err;
  });
  try {
    try {
      await client.connect();
    } catch (err) {
      throw reason ?? err;
    }
    return await use(client);
  } finally {
    client.disconnect();
  }
}

/** Whether a TCP server can listen on `port` of 127.0.0.1 now. */
async function canListen(port: number): Promise<boolean> {
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    return true;
  } catch {
    return false;
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

describe('startRedisServer (test support)', () => {
  const started: RunningRedis[] = [];
  const start = async (options: Parameters<typeof startRedisServer>[0]) => {
    const server = await startRedisServer(options);
    started.push(server);
    return server;
  };
  after(async () => {
    await Promise.all(started.map((s) => s.stop()));
  });

  test('a password-protected server refuses an unauthenticated PING and answers an authenticated one', async () => {
    const server = await start({ password: 'p@ss word:/' });
    assert.equal(server.url, `redis://:${encodeURIComponent('p@ss word:/')}@127.0.0.1:${server.port}`);
    // RESP2: ioredis then sends nothing before PING that could be refused in its place (RESP3 starts with HELLO)
    await assert.rejects(
      withClient(`redis://127.0.0.1:${server.port}`, (c) => c.ping(), { protocol: 2 }),
      /^ReplyError: NOAUTH Authentication required/,
    );
    await assert.rejects(
      withClient(`redis://:wrong@127.0.0.1:${server.port}`, (c) => c.ping()),
      /WRONGPASS|invalid password/i,
    );
    assert.equal(await withClient(server.url, (c) => c.ping()), 'PONG');
  });

  test('a TLS server answers over rediss:// with its CA, and a client without the CA refuses its certificate', async () => {
    const server = await start({ tls: true, password: 'tls-secret' });
    assert.ok(server.url.startsWith('rediss://'), server.url);
    assert.ok(server.caPath !== undefined && existsSync(server.caPath));
    assert.equal(await withClient(server.url, (c) => c.ping(), { caPath: server.caPath }), 'PONG');
    await assert.rejects(
      withClient(server.url, (c) => c.ping()),
      /self-signed certificate in certificate chain/,
    );
  });

  test('with persistence, a key survives restart() and a SIGKILL followed by restart()', async () => {
    const server = await start({ persistence: true });
    await withClient(server.url, (c) => c.set('before-restart', 'kept'));
    await server.restart();
    assert.equal(await withClient(server.url, (c) => c.get('before-restart')), 'kept');

    await withClient(server.url, (c) => c.set('before-kill', 'kept too'));
    await server.kill();
    await server.restart();
    assert.deepEqual(await withClient(server.url, (c) => c.mget('before-restart', 'before-kill')), ['kept', 'kept too']);
  });

  test('without persistence, restart() keeps the port and loses the data', async () => {
    const server = await start({});
    await withClient(server.url, (c) => c.set('gone', 'soon'));
    await server.restart();
    assert.equal(await withClient(server.url, (c) => c.get('gone')), null);
  });

  test('stop() ends the process and frees the port; a second stop() does nothing', async () => {
    const server = await start({});
    assert.equal(await canListen(server.port), false);
    await server.stop();
    assert.equal(await canListen(server.port), true);
    await server.stop();
    await assert.rejects(withClient(server.url, (c) => c.ping()));
  });
});
