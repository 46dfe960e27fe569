import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../config/load-config.js';
import { toReporting } from './reporting.js';

const PEM = '-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----\n';

describe('toReporting', () => {
  test('is statuses in token mode and with no credentials', () => {
    assert.equal(toReporting(loadConfig({ github: { token: 't' } }, {})), 'statuses');
    assert.equal(toReporting(loadConfig({}, {})), 'statuses');
  });
  test('is checks in App mode', () => {
    assert.equal(toReporting(loadConfig({ github: { app: { appId: 1, privateKey: PEM } } }, {})), 'checks');
  });
  test('is what github.reporting says when it is set', () => {
    assert.equal(toReporting(loadConfig({ github: { app: { appId: 1, privateKey: PEM }, reporting: 'both' } }, {})), 'both');
    assert.equal(toReporting(loadConfig({ github: { app: { appId: 1, privateKey: PEM }, reporting: 'statuses' } }, {})), 'statuses');
    assert.equal(toReporting(loadConfig({ github: { token: 't', reporting: 'statuses' } }, {})), 'statuses');
  });
});
