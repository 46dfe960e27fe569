import assert from 'node:assert/strict';
import { test } from 'node:test';
import sample from '../worker.config.sample.js';
import { loadWorkerConfig } from '../src/worker/worker-config.js';

const env = { AUTOBUILDER_WORKER_TOKEN: 'a-worker-token-of-the-sample' };

test('worker.config.sample.ts loads, with the token from the environment, and shows the defaults', () => {
  const config = loadWorkerConfig(sample, env);
  assert.equal(config.token, env.AUTOBUILDER_WORKER_TOKEN);
  // what it must set, and nothing else: every other value it shows is the default
  const required = { id: sample.id, serverUrl: sample.serverUrl, token: '', redis: { url: sample.redis.url } };
  assert.deepEqual(config, loadWorkerConfig(required, env));
});

test('worker.config.sample.ts without a token in the environment names the missing token', () => {
  assert.throws(() => loadWorkerConfig(sample, {}), { code: 'CONFIG_INVALID', message: /token: at least 16 characters/ });
});
