import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { io } from 'socket.io-client';
import type { ConfigStatus } from '../src/config-repo/index.js';
import type { MonitorConfigDelta } from '../src/monitor/index.js';
import type { Browser } from 'playwright-core';
import { launchBrowser, openPage, waitForExpression, type WatchedPage } from './support/browser.js';
import { makeTestDir } from './support/data-dir.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { createGitRepository, type GitRepository } from './support/git-repository.js';
import { startGitHubStandIn } from './support/github-stand-in.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

const FIXTURES = resolve(import.meta.dirname, 'fixtures');

describe('the config repository: hot reload from its push webhook', () => {
  let f: FixtureServer;
  let config: GitRepository & { head: string | null };
  let main: string;
  let browser: Browser;
  let monitor: WatchedPage;

  const configStatus = async (): Promise<ConfigStatus> => (await fetch(`${f.server.url}/api/config`)).json() as Promise<ConfigStatus>;
  /** Sends the config repository's push webhook for `sha`, as GitHub would. */
  const pushConfig = (sha: string) =>
    deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'config', ref: 'refs/heads/main', sha, cloneUrl: 'https://github.com/acme/config.git' }),
    });
  const configStatusPosts = (sha: string) =>
    f.github.requests.filter(
      (r) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === sha && (r.body as { context: string }).context === 'autobuilder/config',
    );

  before(async () => {
    config = await createGitRepository(join(await makeTestDir('config-reload-repo'), 'config'));
    main = await readFile(join(FIXTURES, 'config-repo', 'acme', 'widget', 'main.yaml'), 'utf8');
    config.head = await config.commit({ 'acme/widget/main.yaml': main, 'README.md': 'build definitions\n' }, 'first definitions');
    f = await startFixtureServer('config-reload', { configRepository: { url: config.url, repository: 'acme/config', pollSeconds: 0 } });
    browser = await launchBrowser();
    monitor = await openPage(browser, `${f.server.url}/monitor`);
    await monitor.page.waitForSelector('#connection.conn-live');
  });
  after(async () => {
    await browser.close();
    await f.close();
  });

  test('at start the config repository is fetched and its commit is active, with a success status', async () => {
    const status = await configStatus();
    assert.equal(status.active?.sha, config.head);
    assert.deepEqual(
      status.active.files.map((file) => file.file),
      ['acme/widget/main.yaml'],
    );
    assert.equal(status.lastErrors, null);
    await f.github.waitFor((r) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === config.head, 1, 10_000);
    const [post] = configStatusPosts(config.head as string);
    assert.deepEqual(post?.params, { owner: 'acme', repo: 'config', sha: config.head });
    assert.equal((post.body as { state: string }).state, 'success');
  });

  test('a push that breaks a YAML file keeps the old definitions active and posts an error status on that commit', async () => {
    const good = config.head as string;
    const bad = await config.commit({ 'acme/widget/main.yaml': `${main}\nextra: [unclosed\n` }, 'break the YAML');
    const socket = io(f.server.url, { path: '/socket.io', transports: ['websocket'], reconnection: false, forceNew: true });
    try {
      const seen = new Promise<MonitorConfigDelta>((resolve) => socket.on('config', resolve));
      await new Promise<void>((resolve) => socket.on('snapshot', () => resolve()).emit('watch', {}));
      const answer = await pushConfig(bad);
      assert.equal(answer.status, 202);

      await f.github.waitFor((r) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === bad, 1, 15_000);
      const [post] = configStatusPosts(bad);
      const body = post?.body as { state: string; description: string; target_url: string };
      assert.equal(body.state, 'error');
      assert.match(body.description, /acme\/widget\/main\.yaml:\d+/);
      assert.equal(body.target_url, `${f.server.publicUrl}/api/config`);

      const status = await configStatus();
      assert.equal(status.active?.sha, good, 'the last good revision stays active');
      assert.equal(status.lastErrors?.sha, bad);
      assert.equal(status.lastErrors.problems[0]?.file, 'acme/widget/main.yaml');
      assert.equal(typeof status.lastErrors.problems[0].line, 'number');
      // the monitor heard of it, and the page open in the browser shows it live
      const delta = await seen;
      assert.equal(delta.config.sha, good);
      assert.equal(delta.config.errors?.sha, bad);
      const shown = await waitForExpression<string>(
        monitor.page,
        `(() => { const box = document.getElementById('config-errors'); return box && !box.hidden && box.textContent; })()`,
      );
      assert.match(shown, new RegExp(`config revision ${bad.slice(0, 12)} refused`));
      assert.match(shown, /acme\/widget\/main\.yaml:\d+/);
      assert.match((await monitor.page.textContent('#config-status')) ?? '', new RegExp(`at ${good.slice(0, 12)}`));
      await monitor.page.screenshot({ path: join(f.dir, 'monitor-config-refused.png'), fullPage: true });
    } finally {
      socket.close();
    }

    // a build pushed now runs with the last good definitions
    const sha = await f.repo.commit({ 'message.txt': 'built while the config is broken\n' }, 'widget change');
    await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl: f.cloneUrl }),
    });
    const build = await f.waitForBuild((b) => b.sha === sha);
    assert.equal(build.state, 'success');
    assert.equal(build.configSha, good);
  });

  test('the next good push activates its snapshot; builds record its sha; a deleted file removes its definition', async () => {
    const fixed = await config.commit({ 'acme/widget/main.yaml': main, 'acme/widget/dev.yaml': main }, 'fix the YAML, add dev');
    assert.equal((await pushConfig(fixed)).status, 202);
    await f.github.waitFor((r) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === fixed, 1, 15_000);
    assert.equal((configStatusPosts(fixed)[0]?.body as { state: string } | undefined)?.state, 'success');
    const status = await configStatus();
    assert.equal(status.active?.sha, fixed);
    assert.equal(status.lastErrors, null);
    await waitForExpression(
      monitor.page,
      `document.getElementById('config-errors').hidden && document.getElementById('config-status').textContent.includes('${fixed.slice(0, 12)}')`,
    );
    assert.deepEqual(monitor.problems, []);

    const sha = await f.repo.commit({ 'message.txt': 'built on the new config\n' }, 'widget change 2');
    await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/dev', sha, cloneUrl: f.cloneUrl }),
    });
    const build = await f.waitForBuild((b) => b.sha === sha);
    assert.equal(build.configSha, fixed);

    await rm(join(config.dir, 'acme/widget/dev.yaml'));
    const removed = await config.commit({}, 'remove dev');
    await pushConfig(removed);
    await f.github.waitFor((r) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === removed, 1, 15_000);
    const match = (await (await fetch(`${f.server.url}/api/config/match?repo=acme/widget&ref=refs/heads/dev`)).json()) as {
      wouldRun: unknown[];
      configSha: string;
    };
    assert.deepEqual(match.wouldRun, []);
    assert.equal(match.configSha, removed);
  });

  test('hostile YAML (alias bomb, deep nesting, 50 MB, custom tags, non-UTF-8) is refused with clean errors; the server stays up', async () => {
    const active = (await configStatus()).active?.sha;
    const laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 10; i++)
      laughs.push(
        `${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9)
          .fill(`*${String.fromCharCode(96 + i)}`)
          .join(',')}]`,
      );
    await writeFile(join(config.dir, 'acme/widget/latin1.yaml'), Buffer.from('buildscripts:\n  - caf\xe9.sh\n', 'latin1'));
    const hostile = await config.commit(
      {
        'acme/widget/bomb.yaml': `${laughs.join('\n')}\n`,
        'acme/widget/deep.yaml': `${'['.repeat(10_000)}${']'.repeat(10_000)}\n`,
        'acme/widget/huge.yaml': `# ${'x'.repeat(50 * 1024 * 1024)}\n`,
        'acme/widget/function.yaml': 'buildscripts: !!js/function "function () { return 1 }"\n',
      },
      'hostile definitions',
    );
    const started = performance.now();
    await pushConfig(hostile);
    await f.github.waitFor((r) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === hostile, 1, 30_000);
    const status = await configStatus();
    assert.equal(status.active?.sha, active);
    assert.equal(status.lastErrors?.sha, hostile);
    const files = [...new Set(status.lastErrors.problems.map((p) => p.file))].sort();
    assert.deepEqual(files, [
      'acme/widget/bomb.yaml',
      'acme/widget/deep.yaml',
      'acme/widget/function.yaml',
      'acme/widget/huge.yaml',
      'acme/widget/latin1.yaml',
    ]);
    const messages = status.lastErrors.problems.map((p) => p.message).join('\n');
    assert.match(messages, /UTF-8/);
    assert.match(messages, /!!js\/function/);
    assert.ok(performance.now() - started < 10_000, 'refused in bounded time');
    assert.equal((await fetch(`${f.server.url}/healthz`)).status, 200);

    for (const file of ['bomb', 'deep', 'huge', 'function', 'latin1']) await rm(join(config.dir, `acme/widget/${file}.yaml`));
    const clean = await config.commit({}, 'remove the hostile files');
    await pushConfig(clean);
    await f.github.waitFor((r) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === clean, 1, 15_000);
    assert.equal((await configStatus()).active?.sha, clean);
  });

  test('GET /api/config/match is a dry run naming the builds and why each file matched', async () => {
    const response = await fetch(`${f.server.url}/api/config/match?repo=acme/widget&ref=refs/heads/main`);
    assert.equal(response.status, 200);
    const body = (await response.json()) as {
      wouldRun: { name: string; file: string; context: string }[];
      candidates: { file: string; matched: boolean; why: string }[];
      reason: string | null;
    };
    assert.ok(body.wouldRun.length > 0);
    assert.ok(body.wouldRun.every((d) => d.file === 'acme/widget/main.yaml' && d.context === `autobuilder/${d.name}`));
    assert.deepEqual(body.candidates, [{ file: 'acme/widget/main.yaml', matched: true, why: 'the file of branch main' }]);
    assert.equal(body.reason, null);
    for (const query of [
      'repo=acme/widget',
      'ref=refs/heads/main',
      'repo=acme&ref=refs/heads/main',
      'repo=acme/widget&ref=refs/heads/../../etc/passwd',
      'repo=../x&ref=refs/heads/main',
    ]) {
      const bad = await fetch(`${f.server.url}/api/config/match?${query}`);
      assert.equal(bad.status, 400, query);
      const text = await bad.text();
      assert.doesNotMatch(text, /at .*\.ts:\d+/, 'no stack trace');
    }
  });

  test('POST /api/config/reload needs the bearer token', async () => {
    const response = await fetch(`${f.server.url}/api/config/reload`, { method: 'POST' });
    assert.equal(response.status, 403);
  });
});

describe('the config repository: a revision that adds a repository registers its webhook', () => {
  test('a config push with a new repository directory creates that repository hook', async () => {
    const config = await createGitRepository(join(await makeTestDir('config-register-repo'), 'config'));
    const main = await readFile(join(FIXTURES, 'config-repo', 'acme', 'widget', 'main.yaml'), 'utf8');
    await config.commit({ 'acme/widget/main.yaml': main }, 'first definitions');
    const github = await startGitHubStandIn();
    const f = await startFixtureServer('config-register', {
      publicUrl: 'https://ci.example.com',
      github: { apiUrl: github.url, token: 'test-token', registerWebhooks: true },
      configRepository: { url: config.url, repository: 'acme/config', pollSeconds: 0 },
    });
    // as GitHub does, the stand-in lists the hooks made so far: the next run finds the widget's
    github.answer('repos/list-webhooks', (request) => ({
      status: 200,
      body: github.requests
        .filter((r) => r.operationId === 'repos/create-webhook' && r.params['repo'] === request.params['repo'])
        .map((r, i) => {
          const made = r.body as { events: string[]; active: boolean; config: Record<string, string> };
          const self = `https://api.github.com/repos/acme/${request.params['repo'] ?? ''}/hooks/${i + 1}`;
          return {
            type: 'Repository',
            id: i + 1,
            name: 'web',
            active: made.active,
            events: made.events,
            config: { ...made.config, secret: '********' },
            updated_at: '2024-01-01T00:00:00Z',
            created_at: '2024-01-01T00:00:00Z',
            url: self,
            test_url: `${self}/test`,
            ping_url: `${self}/pings`,
            deliveries_url: `${self}/deliveries`,
            last_response: { code: null, status: 'unused', message: null },
          };
        }),
    }));
    try {
      const created = (repo: string) => (r: { operationId: string; params: Record<string, string> }) =>
        r.operationId === 'repos/create-webhook' && r.params['repo'] === repo;
      await github.waitFor(created('widget'), 1, 15_000);
      const sha = await config.commit({ 'acme/gadget/main.yaml': main }, 'add gadget');
      await deliver(f.server.url, {
        event: 'push',
        secret: f.secret,
        payload: pushPayload({ owner: 'acme', repo: 'config', ref: 'refs/heads/main', sha, cloneUrl: 'https://github.com/acme/config.git' }),
      });
      const [hook] = await github.waitFor(created('gadget'), 1, 15_000);
      assert.equal((hook?.body as { config: { url: string } } | undefined)?.config.url, 'https://ci.example.com/hooks/github');
      // the run that made the gadget hook found the widget's and made it not again
      const listed = (repo: string) => (r: { operationId: string; params: Record<string, string> }) =>
        r.operationId === 'repos/list-webhooks' && r.params['repo'] === repo;
      await github.waitFor(listed('widget'), 2, 15_000);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(github.requests.filter(created('widget')).length, 1);
      assert.deepEqual(github.rejected, []);
    } finally {
      await f.close();
      await github.close();
    }
  });
});
