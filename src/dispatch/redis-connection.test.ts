import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isAppError } from '../errors.js';
import { describeRedisUrl, toRedisOptions } from './redis-connection.js';

const isConfigInvalid = (err: unknown): boolean => isAppError(err, 'CONFIG_INVALID');

describe('toRedisOptions', () => {
  let dir: string;
  let caPath: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'redis-connection-'));
    caPath = join(dir, 'ca.pem');
    await writeFile(caPath, '-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('reads host and port of a redis:// URL, with db 0 and no TLS', () => {
    assert.deepEqual(toRedisOptions('redis://127.0.0.1:6380'), { host: '127.0.0.1', port: 6380, db: 0, maxRetriesPerRequest: null });
  });

  test('uses port 6379 when the URL names none', () => {
    assert.equal(toRedisOptions('redis://queue.internal').port, 6379);
    assert.equal(toRedisOptions('rediss://queue.internal').port, 6379);
  });

  test('sets maxRetriesPerRequest to null, as BullMQ requires of a worker connection', () => {
    assert.equal(toRedisOptions('redis://h').maxRetriesPerRequest, null);
  });

  test('reads a password without a user name', () => {
    const options = toRedisOptions('redis://:s3cret@h');
    assert.equal(options.password, 's3cret');
    assert.equal('username' in options, false);
  });

  test('reads user name and password, percent-decoded', () => {
    const options = toRedisOptions('redis://worker%2D1:p%40ss%3Aw%2Frd@h');
    assert.equal(options.username, 'worker-1');
    assert.equal(options.password, 'p@ss:w/rd');
  });

  test('reads the db number from the path', () => {
    assert.equal(toRedisOptions('redis://h/3').db, 3);
    assert.equal(toRedisOptions('redis://h/').db, 0);
  });

  test('takes an IPv6 host without its brackets', () => {
    const options = toRedisOptions('redis://:pw@[::1]:6390/2');
    assert.equal(options.host, '::1');
    assert.equal(options.port, 6390);
    assert.equal(options.db, 2);
  });

  test('turns TLS on for rediss://, with the host name as SNI', () => {
    assert.deepEqual(toRedisOptions('rediss://:pw@queue.example.com:6380').tls, { servername: 'queue.example.com' });
  });

  test('sends no SNI for an IP address (RFC 6066 allows host names only)', () => {
    assert.deepEqual(toRedisOptions('rediss://127.0.0.1:6380').tls, {});
  });

  test('trusts the CA read from caPath for rediss://', () => {
    const tls = toRedisOptions('rediss://127.0.0.1:6380', { caPath }).tls;
    assert.ok(tls?.ca instanceof Buffer);
    assert.match(tls.ca.toString(), /not really/);
  });

  const rejected: [string, string][] = [
    ['not a URL', 'no URL at all'],
    ['http://h:6379', 'another scheme'],
    ['redis:h', 'no host'],
    ['redis://user@h', 'a user name without a password'],
    ['redis://h/zero', 'a path that is not a number'],
    ['redis://h/1/2', 'a path of two segments'],
    ['redis://h/-1', 'a negative db'],
    ['redis://h?db=2', 'a query'],
    ['redis://:100%@h', 'a password that is not valid percent-encoding'],
    ['redis://h:99999', 'a port out of range'],
  ];
  for (const [url, why] of rejected) {
    test(`throws CONFIG_INVALID for ${why}: ${url}`, () => {
      assert.throws(() => toRedisOptions(url), isConfigInvalid);
    });
  }

  test('throws CONFIG_INVALID when a CA is given for a plain redis:// URL', () => {
    assert.throws(() => toRedisOptions('redis://h', { caPath }), isConfigInvalid);
  });

  test('throws CONFIG_INVALID when the CA file cannot be read', () => {
    assert.throws(() => toRedisOptions('rediss://h', { caPath: join(dir, 'missing.pem') }), isConfigInvalid);
  });

  test('never shows the password in its error messages', () => {
    for (const url of ['redis://:hunter2@h/zero', 'redis://u:hunter2@h?x=1', 'http://:hunter2@h', 'redis://:hunter2@', 'redis://:hunter2@h:99999']) {
      assert.throws(
        () => toRedisOptions(url),
        (err: unknown) => isConfigInvalid(err) && err instanceof Error && !err.message.includes('hunter2') && err.cause === undefined,
        url,
      );
    }
  });
});

describe('describeRedisUrl', () => {
  test('replaces the password with ***', () => {
    assert.equal(describeRedisUrl('redis://:s3cret@127.0.0.1:6380/1'), 'redis://:***@127.0.0.1:6380/1');
  });

  test('keeps the user name and replaces only the password', () => {
    assert.equal(describeRedisUrl('rediss://worker:s3cret@queue.example.com'), 'rediss://worker:***@queue.example.com');
  });

  test('replaces a query and a fragment with ***', () => {
    assert.equal(describeRedisUrl('redis://h/1?password=s3cret#s3cret'), 'redis://h/1?***#***');
  });

  test('leaves a URL without a password as it is', () => {
    assert.equal(describeRedisUrl('redis://[::1]:6380/2'), 'redis://[::1]:6380/2');
  });

  test('never contains the password, encoded or decoded, whatever the URL', () => {
    const password = 'p@ss:w/rd%';
    const encoded = encodeURIComponent(password);
    for (const url of [
      `redis://:${encoded}@h`,
      `redis://user:${encoded}@h:1/2`,
      `rediss://:${encoded}@[::1]`,
      `redis://:${encoded}@h?q=1#f`,
      `redis://:${encoded}@`,
      `redis:${encoded}`,
      `http://:${encoded}@h`,
      `:${encoded}@h`,
    ]) {
      const shown = describeRedisUrl(url);
      assert.ok(!shown.includes(password) && !shown.includes(encoded), `${url} shown as ${shown}`);
    }
  });

  test('answers "(invalid Redis URL)" for what does not parse, instead of throwing', () => {
    assert.equal(describeRedisUrl('not a URL :hunter2'), '(invalid Redis URL)');
    assert.equal(describeRedisUrl('http://:hunter2@h'), '(invalid Redis URL)');
  });
});
