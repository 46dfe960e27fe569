import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { WebhookTestResult } from '../src/cli/webhook-test.js';
import { ensureWebhookSecret, loadConfig } from '../src/config/index.js';
import { createLogger } from '../src/logger.js';
import { startServer, type RunningServer } from '../src/server.js';
import { runCliProcess } from './support/cli-process.js';
import { makeTestDir } from './support/data-dir.js';

describe('autobuilder webhook test', () => {
  let server: RunningServer;
  let dir: string;
  let dataDir: string;
  let secret: string;

  before(async () => {
    dir = await makeTestDir('cli-webhook');
    dataDir = join(dir, 'data');
    // no secret configured: the server generates one in its data directory, as npm start does
    ({ secret } = await ensureWebhookSecret(undefined, dataDir));
    const config = loadConfig({ dataDir, listen: { host: '127.0.0.1', port: 0 }, docker: { network: 'none' }, logLevel: 'silent' }, {});
    server = await startServer(config, { log: createLogger({ level: 'silent' }), webhookSecret: secret });
  });

  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('with the right secret the server takes the ping: exit 0', async () => {
    const run = await runCliProcess(['webhook', 'test', '--url', server.url], { env: { GITHUB_WEBHOOK_SECRET: secret } });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, new RegExp(`^ping [0-9a-f-]{36} to ${server.url}/hooks/github \\(secret from GITHUB_WEBHOOK_SECRET\\)\\nanswer: 200 `));
    assert.match(run.stdout, /the server verified the signature and took the ping/);
    assert.ok(!run.stdout.includes(secret) && !run.stderr.includes(secret), 'the secret is never printed');
  });

  test('--json gives the status, the answer and its meaning', async () => {
    const run = await runCliProcess(['--json', 'webhook', 'test', '--url', server.url, '--secret', secret]);
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as WebhookTestResult;
    assert.equal(result.ok, true);
    assert.equal(result.status, 200);
    assert.equal(result.secretSource, '--secret');
    // the server answers a ping with its event and the delivery id it was sent under
    assert.deepEqual(result.body, { ok: true, event: 'ping', deliveryId: result.deliveryId, zen: 'Anything added dilutes everything else.' });
  });

  test("finds the secret the server generated in its data directory through the server's config file", async () => {
    const configFile = join(dir, 'config.mjs');
    await writeFile(configFile, `export default { dataDir: ${JSON.stringify(dataDir)} };\n`);
    const run = await runCliProcess(['webhook', 'test', '--url', server.url, '--config', configFile]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, new RegExp(`secret from ${join(dataDir, 'webhook-secret').replaceAll('/', '\\/')}`));
  });

  test('with a wrong secret: exit 3, the 401 and that the secrets differ', async () => {
    const run = await runCliProcess(['webhook', 'test', '--url', server.url], { env: { AUTOBUILDER_WEBHOOK_SECRET: 'not the secret' } });
    assert.equal(run.code, 3);
    assert.match(run.stdout, /answer: 401 \{"error":\{"code":"SIGNATURE_INVALID"/);
    assert.match(run.stdout, /the secrets differ: .*\(from AUTOBUILDER_WEBHOOK_SECRET\)/);
  });

  test('a server that cannot be reached: exit 3, and says so', async () => {
    const closed = await startServer(loadConfig({ dataDir: join(dir, 'closed'), listen: { port: 0 }, docker: { network: 'none' }, logLevel: 'silent' }, {}), {
      log: createLogger({ level: 'silent' }),
      webhookSecret: 'x',
    });
    const url = closed.url;
    await closed.close();
    const run = await runCliProcess(['--json', 'webhook', 'test', '--url', url, '--secret', 'x']);
    assert.equal(run.code, 3);
    const result = JSON.parse(run.stdout) as WebhookTestResult;
    assert.equal(result.status, 0);
    assert.match(result.meaning, /^the server could not be reached: .*ECONNREFUSED/);
  });

  test('no secret anywhere is a usage error: exit 2', async () => {
    const configFile = join(dir, 'elsewhere.mjs');
    await writeFile(configFile, `export default { dataDir: ${JSON.stringify(join(dir, 'no-data'))} };\n`);
    const run = await runCliProcess(['webhook', 'test', '--url', server.url, '--config', configFile]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /no webhook secret: give --secret or AUTOBUILDER_WEBHOOK_SECRET/);
  });
});
