import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createLogger } from '../logger.js';
import { toJobGitAuth } from './bullmq-dispatch.js';

const log = createLogger({ level: 'silent' });

describe('toJobGitAuth', () => {
  test("carries the token of the build's repository, asked for when the job is made", async () => {
    const asked: string[] = [];
    const gitCredentials = { host: 'github.com', tokenFor: async (repository: string) => `ghs_${asked.push(repository)}` };
    assert.deepEqual(await toJobGitAuth('https://github.com/acme/widget.git', { gitCredentials, log }), { host: 'github.com', token: 'ghs_1' });
    assert.deepEqual(await toJobGitAuth('https://github.com/acme/widget.git', { gitCredentials, log }), { host: 'github.com', token: 'ghs_2' });
    assert.deepEqual(asked, ['acme/widget', 'acme/widget']);
  });

  test('carries nothing for another host, a local path, or a repository without a token', async () => {
    let asked = 0;
    const gitCredentials = { host: 'github.com', tokenFor: async () => `ghs_${++asked}` };
    assert.equal(await toJobGitAuth('https://mirror.example/acme/widget.git', { gitCredentials, log }), null);
    assert.equal(await toJobGitAuth('/srv/git/widget', { gitCredentials, log }), null);
    assert.equal(asked, 0);
    const refusing = { host: 'github.com', tokenFor: () => Promise.reject(new Error('not installed')) };
    assert.equal(await toJobGitAuth('https://github.com/acme/widget.git', { gitCredentials: refusing, log }), null);
    const none = { host: 'github.com', tokenFor: async () => undefined };
    assert.equal(await toJobGitAuth('https://github.com/acme/widget.git', { gitCredentials: none, log }), null);
  });

  test('the one token of token mode goes to its host only', async () => {
    const gitToken = { value: 'ghp_one', host: 'github.com' };
    assert.deepEqual(await toJobGitAuth('https://github.com/acme/widget.git', { gitToken, log }), { host: 'github.com', token: 'ghp_one' });
    assert.equal(await toJobGitAuth('https://evil.example/acme/widget.git', { gitToken, log }), null);
  });
});
