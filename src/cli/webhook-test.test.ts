import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { examplePayloads } from '../../test/support/webhook-delivery.js';
import { CliError } from './exit-codes.js';
import { PING_EXAMPLE } from './ping-example.js';
import { findWebhookSecret, toMeaning } from './webhook-test.js';

describe('webhook test', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'autobuilder-webhook-secret-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('sends the first ping of @octokit/webhooks-examples as it is', () => {
    assert.deepEqual(PING_EXAMPLE, examplePayloads('ping')[0]);
  });

  test('takes the secret from --secret, then AUTOBUILDER_WEBHOOK_SECRET, then GITHUB_WEBHOOK_SECRET', async () => {
    const env = { AUTOBUILDER_WEBHOOK_SECRET: 'own', GITHUB_WEBHOOK_SECRET: 'server', AUTOBUILDER_CONFIG: join(dir, 'none.ts') };
    assert.deepEqual(await findWebhookSecret({ flag: 'flag', env }), { secret: 'flag', source: '--secret' });
    assert.deepEqual(await findWebhookSecret({ env }), { secret: 'own', source: 'AUTOBUILDER_WEBHOOK_SECRET' });
    assert.deepEqual(await findWebhookSecret({ env: { ...env, AUTOBUILDER_WEBHOOK_SECRET: '' } }), { secret: 'server', source: 'GITHUB_WEBHOOK_SECRET' });
  });

  test("then the server's config file, then the secret the server generated in its data directory", async () => {
    const dataDir = join(dir, 'data');
    const withSecret = join(dir, 'with-secret.mjs');
    await writeFile(withSecret, `export default { dataDir: ${JSON.stringify(dataDir)}, github: { webhookSecret: 'from-config' } };\n`);
    assert.deepEqual(await findWebhookSecret({ configFile: withSecret, env: {} }), { secret: 'from-config', source: withSecret });
    const without = join(dir, 'without-secret.mjs');
    await writeFile(without, `export default { dataDir: ${JSON.stringify(dataDir)} };\n`);
    await assert.rejects(
      findWebhookSecret({ configFile: without, env: {} }),
      (err) => err instanceof CliError && err.exitCode === 2 && /webhook-secret does not exist/.test(err.message),
    );
    await mkdir(dataDir, { recursive: true });
    await writeFile(join(dataDir, 'webhook-secret'), 'generated-secret\n');
    assert.deepEqual(await findWebhookSecret({ configFile: without, env: {} }), { secret: 'generated-secret', source: join(dataDir, 'webhook-secret') });
  });

  test('a config file that is given but missing is a usage error', async () => {
    await assert.rejects(
      findWebhookSecret({ configFile: join(dir, 'missing.ts'), env: {} }),
      (err) => err instanceof CliError && err.exitCode === 2 && /missing\.ts does not exist/.test(err.message),
    );
  });

  test('says what an answer means', () => {
    assert.match(toMeaning(200, { ok: true }, '--secret'), /took the ping/);
    assert.match(
      toMeaning(401, { error: { code: 'SIGNATURE_INVALID', message: 'x' } }, 'GITHUB_WEBHOOK_SECRET'),
      /^the secrets differ: .*from GITHUB_WEBHOOK_SECRET/,
    );
    assert.match(toMeaning(421, { error: { code: 'HOST_NOT_ALLOWED', message: 'x' } }, 's'), /listen\.allowedHosts/);
    assert.match(toMeaning(404, 'Not Found', 's'), /nothing answers POST \/hooks\/github/);
    assert.match(toMeaning(500, { error: { code: 'INTERNAL', message: 'x' } }, 's'), /unexpected answer 500 INTERNAL/);
  });
});
