import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';

const SECRET = 'deploy-s3cr3t-value-42';

describe('server-side secrets of builds', () => {
  let f: FixtureServer;
  before(async () => {
    f = await startFixtureServer('secrets', { builds: { secretEnv: { DEPLOY_TOKEN: SECRET } } });
  });
  after(async () => {
    await f.close();
  });

  const run = async (content: string, fromFork: boolean) => {
    const sha = await f.repo.commit({ 'message.txt': content }, content);
    const result = await f.server.coordinator.submit({
      owner: 'acme',
      repo: 'widget',
      ref: 'refs/heads/secrets',
      sha,
      cloneUrl: f.cloneUrl,
      defaultBranch: 'main',
      deliveryId: null,
      fromFork,
    });
    const build = await f.waitForBuild((b) => b.id === result.builds[0]?.id);
    assert.equal(build.state, 'success', build.description ?? '');
    return (await fetch(build.logUrl)).text();
  };

  test('a build gets the secret, and its log shows it masked', async () => {
    const log = await run('with secrets\n', false);
    assert.match(log, /token: \*\*\*/);
    assert.ok(!log.includes(SECRET));
  });

  test('a pull request from a fork gets no secret at all', async () => {
    const log = await run('from a fork\n', true);
    assert.match(log, /token: <none>/);
  });
});
