import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sample from '../../config.sample.js';
import { isAppError } from '../errors.js';
import { loadConfig } from './load-config.js';
import { ensureWebhookSecret } from './webhook-secret.js';

/** Asserts that every object in `value` is frozen. */
function assertDeeplyFrozen(value: unknown, path = 'config'): void {
  if (value === null || typeof value !== 'object') return;
  assert.ok(Object.isFrozen(value), `${path} is frozen`);
  for (const [key, child] of Object.entries(value)) assertDeeplyFrozen(child, `${path}.${key}`);
}

/** Runs `loadConfig` expecting CONFIG_INVALID and returns the message. */
function invalid(input: unknown): string {
  let message = '';
  assert.throws(
    () => loadConfig(input, {}),
    (err: unknown) => {
      assert.ok(isAppError(err, 'CONFIG_INVALID'), `expected CONFIG_INVALID, got ${String(err)}`);
      message = err.message;
      return true;
    },
  );
  return message;
}

describe('loadConfig', () => {
  test('gives the documented defaults for {}', () => {
    const config = loadConfig({}, {});
    assert.equal(config.dataDir, './data');
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 8462, allowedHosts: [] });
    assert.deepEqual(config.configRepository, { path: './projects-config-repo-example', branch: 'main', pollSeconds: 60 });
    assert.deepEqual(config.github, { apiUrl: 'https://api.github.com', writeIntervalMs: 0, registerWebhooks: false });
    assert.deepEqual(config.builds, {
      defaultTimeoutSeconds: 3600,
      maxTimeoutSeconds: 4 * 3600,
      cancelRunningOnSupersede: false,
      shutdownGraceSeconds: 60,
      maxLogBytes: 256 * 1024 ** 2,
      maxOutputBytesPerSecond: 8 * 1024 ** 2,
      forkNetwork: 'none',
      gitTimeoutSeconds: 600,
      diskQuotaMiB: 4096,
      maxArtifactBytes: 1024 ** 3,
      diskReserveMiB: 2048,
      cacheMaxMiB: 2048,
      mounts: [],
      secretEnv: {},
    });
    assert.deepEqual(config.api, {});
    assert.equal(config.jobBacklog, undefined);
    assert.deepEqual(config.docker, {
      socketPath: '/var/run/docker.sock',
      defaultImage: 'autobuilder/debian-build:bookworm',
      network: 'autobuilder-builds',
      memoryBytes: 2 * 1024 ** 3,
      pidsLimit: 1024,
      cpus: 2,
    });
    assert.equal(config.jobConcurrency, availableParallelism());
    assert.deepEqual(config.cloneUrlRewrites, []);
    assert.equal(config.snapshotDriver, 'auto');
    assert.equal(config.logLevel, 'info');
    assert.equal(config.publicUrl, undefined);
  });

  test('treats undefined and null input as {}', () => {
    assert.deepEqual(loadConfig(undefined, {}), loadConfig({}, {}));
    assert.deepEqual(loadConfig(null, {}), loadConfig({}, {}));
  });

  test('returns a deeply frozen object', () => {
    const config = loadConfig({ cloneUrlRewrites: [{ from: 'https://github.com/', to: 'file:///srv/' }] }, {});
    assertDeeplyFrozen(config);
    assert.throws(() => {
      (config.listen as { port: number }).port = 1;
    }, TypeError);
  });

  test('config.sample.ts loads and shows the defaults', () => {
    const config = loadConfig(sample, {});
    assert.deepEqual(config, loadConfig({}, {}));
  });

  test('keeps given values and fills in the rest', () => {
    const config = loadConfig({ listen: { port: 9000 }, docker: { network: 'none' }, publicUrl: 'https://ci.example.com' }, {});
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 9000, allowedHosts: [] });
    assert.equal(config.docker.network, 'none');
    assert.equal(config.docker.pidsLimit, 1024);
    assert.equal(config.publicUrl, 'https://ci.example.com');
  });

  test('names every problem in one CONFIG_INVALID error', () => {
    const message = invalid({ listen: { port: 'x' }, docker: { network: '-not a name' }, bogus: 1 });
    assert.match(message, /listen\.port/);
    assert.match(message, /docker\.network/);
    assert.match(message, /bogus/);
    assert.match(message, /3 problem/);
  });

  for (const [what, input, key] of [
    ['a port out of range', { listen: { port: 70000 } }, 'listen.port'],
    ['a fractional port', { listen: { port: 80.5 } }, 'listen.port'],
    ['an allowed host with a port', { listen: { allowedHosts: ['ci.example.com:443'] } }, 'listen.allowedHosts.0'],
    ['an empty data dir', { dataDir: '   ' }, 'dataDir'],
    ['a non-http public URL', { publicUrl: 'javascript:alert(1)' }, 'publicUrl'],
    ['an unknown key in a section', { github: { secret: 'x' } }, 'github'],
    ['a registerWebhooks that is not a boolean', { github: { registerWebhooks: 'yes' } }, 'github.registerWebhooks'],
    ['zero job concurrency', { jobConcurrency: 0 }, 'jobConcurrency'],
    ['an unknown snapshot driver', { snapshotDriver: 'zfs' }, 'snapshotDriver'],
    ['a clone-URL rewrite without "to"', { cloneUrlRewrites: [{ from: 'x' }] }, 'cloneUrlRewrites.0.to'],
    ['a config that is not an object', 'dataDir=/x', '(root)'],
  ] as const) {
    test(`refuses ${what}, naming ${key}`, () => {
      assert.ok(invalid(input).includes(key), key);
    });
  }

  test('GITHUB_WEBHOOK_SECRET and GITHUB_TOKEN from the environment override the file', () => {
    const config = loadConfig(
      { github: { webhookSecret: 'from-file', token: 'file-token' } },
      { GITHUB_WEBHOOK_SECRET: 'from-env', GITHUB_TOKEN: 'env-token' },
    );
    assert.equal(config.github.webhookSecret, 'from-env');
    assert.equal(config.github.token, 'env-token');
    assertDeeplyFrozen(config);
  });

  test('the environment supplies secrets the file does not have', () => {
    const config = loadConfig({}, { GITHUB_WEBHOOK_SECRET: 's', GITHUB_TOKEN: 't' });
    assert.equal(config.github.webhookSecret, 's');
    assert.equal(config.github.token, 't');
  });

  test('empty environment values do not override the file', () => {
    const config = loadConfig({ github: { webhookSecret: 'from-file', token: 'file-token' } }, { GITHUB_WEBHOOK_SECRET: '', GITHUB_TOKEN: '' });
    assert.equal(config.github.webhookSecret, 'from-file');
    assert.equal(config.github.token, 'file-token');
  });

  test('reads secrets only from the environment it is given', () => {
    const config = loadConfig({}, {});
    assert.equal(config.github.webhookSecret, undefined);
    assert.equal(config.github.token, undefined);
  });

  test('does not change its input', () => {
    const input = { listen: { port: 1234 }, github: { token: 'file' } };
    const copy = structuredClone(input);
    loadConfig(input, { GITHUB_TOKEN: 'env' });
    assert.deepEqual(input, copy);
    assert.equal(Object.isFrozen(input), false);
  });
});

describe('loadConfig: GitHub App settings', () => {
  const PEM = '-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----\n';

  test('takes the App id and key from the file', () => {
    const config = loadConfig({ github: { app: { appId: 12, privateKey: PEM } } }, {});
    assert.deepEqual(config.github.app, { appId: 12, privateKey: PEM });
    assert.equal(config.github.reporting, undefined);
  });

  test('GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY make the App block, a one-line key gets its line breaks back', () => {
    const config = loadConfig({}, { GITHUB_APP_ID: '345', GITHUB_APP_PRIVATE_KEY: PEM.replaceAll('\n', '\\n') });
    assert.deepEqual(config.github.app, { appId: 345, privateKey: PEM });
    assertDeeplyFrozen(config);
  });

  test('a key from the environment replaces the file named by privateKeyPath', () => {
    const config = loadConfig({ github: { app: { appId: 1, privateKeyPath: '/etc/autobuilder/app.pem' } } }, { GITHUB_APP_PRIVATE_KEY: PEM });
    assert.deepEqual(config.github.app, { appId: 1, privateKey: PEM });
  });

  test("the App's webhook secret is the one deliveries are verified with; GITHUB_WEBHOOK_SECRET still overrides it", () => {
    const input = { github: { webhookSecret: 'hooks', app: { appId: 1, privateKeyPath: '/k.pem', webhookSecret: 'app-hook' } } };
    assert.equal(loadConfig(input, {}).github.webhookSecret, 'app-hook');
    assert.equal(loadConfig(input, { GITHUB_WEBHOOK_SECRET: 'env' }).github.webhookSecret, 'env');
  });

  for (const [what, input, env, key] of [
    ['an App without a key', { github: { app: { appId: 1 } } }, {}, 'github.app.privateKey'],
    ['an App with both a key and a key file', { github: { app: { appId: 1, privateKey: PEM, privateKeyPath: '/k.pem' } } }, {}, 'github.app.privateKey'],
    ['a key that is no PEM', { github: { app: { appId: 1, privateKey: 'ssh-rsa AAAA' } } }, {}, 'github.app.privateKey'],
    ['an App id that is not a number', {}, { GITHUB_APP_ID: 'my-app', GITHUB_APP_PRIVATE_KEY: PEM }, 'github.app.appId'],
    ['a key without an App id', {}, { GITHUB_APP_PRIVATE_KEY: PEM }, 'github.app.appId'],
    ['check runs in token mode', { github: { token: 't', reporting: 'checks' } }, {}, 'github.reporting'],
    ['an unknown reporting', { github: { reporting: 'emails' } }, {}, 'github.reporting'],
  ] as const) {
    test(`refuses ${what}, naming ${key}`, () => {
      let message = '';
      try {
        loadConfig(input, env);
      } catch (err) {
        assert.ok(isAppError(err, 'CONFIG_INVALID'));
        message = err.message;
      }
      assert.ok(message.includes(key), message);
      assert.doesNotMatch(message, /MIIBOgIBAAJBAK|AAAA/, 'the key is never quoted');
    });
  }
});

describe('ensureWebhookSecret', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'autobuilder-webhook-secret-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test('generates a 64-hex secret into <dataDir>/webhook-secret with mode 0600', async () => {
    const dataDir = join(tmp, 'generated', 'data');
    const first = await ensureWebhookSecret(undefined, dataDir);
    assert.match(first.secret, /^[0-9a-f]{64}$/);
    assert.equal(first.file, join(dataDir, 'webhook-secret'));
    assert.equal(first.generated, true);
    assert.equal((await readFile(join(dataDir, 'webhook-secret'), 'utf8')).trim(), first.secret);
    assert.equal((await stat(join(dataDir, 'webhook-secret'))).mode & 0o777, 0o600);
  });

  test('returns the same secret on a second call', async () => {
    const dataDir = join(tmp, 'twice');
    const first = await ensureWebhookSecret(undefined, dataDir);
    const second = await ensureWebhookSecret(undefined, dataDir);
    assert.equal(second.secret, first.secret);
    assert.equal(second.file, first.file);
    assert.equal(second.generated, false);
  });

  test('generates a new secret when the file is empty', async () => {
    const dataDir = join(tmp, 'empty');
    await ensureWebhookSecret(undefined, dataDir);
    await writeFile(join(dataDir, 'webhook-secret'), '\n');
    const again = await ensureWebhookSecret(undefined, dataDir);
    assert.match(again.secret, /^[0-9a-f]{64}$/);
    assert.equal(again.generated, true);
  });

  test('returns the configured secret and writes no file', async () => {
    const dataDir = join(tmp, 'configured');
    const result = await ensureWebhookSecret('configured secret', dataDir);
    assert.deepEqual(result, { secret: 'configured secret', file: null, generated: false });
    await assert.rejects(stat(join(dataDir, 'webhook-secret')), { code: 'ENOENT' });
  });
});
