import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { loadConfig, type ConfigInput } from '../src/config/index.js';
import type { GitHubAuthStatus } from '../src/github/github-auth.js';
import type { BuildView } from '../src/http/build-view.js';
import { createLogger } from '../src/logger.js';
import { startServer, toConfigRepositorySource, type RunningServer } from '../src/server.js';
import { makeTestDir } from './support/data-dir.js';
import { TEST_IMAGE } from './support/fixture-server.js';
import { createGitRepository, type GitRepository } from './support/git-repository.js';
import { startGitHubStandIn, type GitHubStandIn, type GitHubStandInAppOptions, type RecordedRequest } from './support/github-stand-in.js';
import { deliver, examplePayloads, pushPayload } from './support/webhook-delivery.js';

const FIXTURES = resolve(import.meta.dirname, 'fixtures');
const APP_ID = 31337;
const SECRET = 'the App webhook secret';
const CREDENTIALS = { username: 'ops', password: 'app mode pages password' };
const CLONE_URL = 'https://github.com/acme/widget.git';

/** The App's key pair, made at test time (no private key is committed). */
const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });
const PRIVATE_KEY = keys.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
const PUBLIC_KEY = keys.publicKey.export({ type: 'spki', format: 'pem' }).toString();
/** a line of the private key's body, looked for in logs and answers */
const KEY_LINE = PRIVATE_KEY.split('\n')[3] ?? '';

interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A server in GitHub App mode on a stand-in in App mode, its log read by the test. */
interface AppServer {
  server: RunningServer;
  github: GitHubStandIn;
  repo: GitRepository & { head: string | null };
  lines(): LogLine[];
  logText(): string;
  push(sha: string): Promise<void>;
  waitForBuild(sha: string): Promise<BuildView>;
  api(path: string, authorized?: boolean): Promise<{ status: number; text: string }>;
  close(): Promise<void>;
}

async function startAppServer(
  name: string,
  options: { app?: Partial<GitHubStandInAppOptions>; github?: Partial<NonNullable<ConfigInput['github']>>; appConfig?: Record<string, unknown> } = {},
): Promise<AppServer> {
  const dir = await makeTestDir(name);
  const github = await startGitHubStandIn({ app: { appId: APP_ID, publicKeyPem: PUBLIC_KEY, installations: { 'acme/widget': 71 }, ...options.app } });
  const repo = await createGitRepository(join(dir, 'widget'), join(FIXTURES, 'projects', 'widget'));
  const out = new PassThrough();
  let text = '';
  out.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  const config = loadConfig(
    {
      dataDir: join(dir, 'data'),
      listen: { host: '127.0.0.1', port: 0 },
      publicUrl: 'http://ci.test',
      configRepository: { path: join(FIXTURES, 'config-repo') },
      github: {
        apiUrl: github.url,
        app: { appId: APP_ID, privateKey: PRIVATE_KEY, webhookSecret: SECRET, ...options.appConfig },
        reporting: 'statuses',
        registerWebhooks: true,
        ...options.github,
      },
      pages: { credentials: CREDENTIALS },
      docker: { defaultImage: TEST_IMAGE, network: 'none' },
      cloneUrlRewrites: [{ from: CLONE_URL, to: repo.url }],
      snapshotDriver: 'copy',
      logLevel: 'info',
    },
    {},
  );
  assert.equal(config.github.webhookSecret, SECRET, "the App's webhook secret verifies deliveries");
  const server = await startServer(config, { log: createLogger({ level: 'info', destination: out }), webhookSecret: config.github.webhookSecret ?? '' });
  const basic = `Basic ${Buffer.from(`${CREDENTIALS.username}:${CREDENTIALS.password}`).toString('base64')}`;
  return {
    server,
    github,
    repo,
    logText: () => text,
    lines: () =>
      text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as LogLine),
    async push(sha) {
      const response = await deliver(server.url, {
        event: 'push',
        secret: SECRET,
        payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl: CLONE_URL }),
      });
      assert.equal(response.status, 202, JSON.stringify(response.body));
    },
    async waitForBuild(sha) {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const response = await fetch(`${server.url}/api/builds?repo=acme/widget&limit=50`, { headers: { authorization: basic } });
        const { builds } = (await response.json()) as { builds: BuildView[] };
        const found = builds.find((b) => b.sha === sha && b.context === 'autobuilder/autobuild/build.sh');
        if (found !== undefined && found.state !== 'queued' && found.state !== 'running') return found;
        if (Date.now() > deadline) throw new Error(`no finished build of ${sha}: ${JSON.stringify(found ?? null)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async api(path, authorized = true) {
      const response = await fetch(`${server.url}${path}`, { headers: authorized ? { authorization: basic } : {} });
      return { status: response.status, text: await response.text() };
    },
    async close() {
      await server.close();
      await github.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const isStatusFor = (sha: string) => (r: RecordedRequest) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === sha;
const tokenOf = (r: RecordedRequest): string | null => (r.credential.kind === 'installation' ? r.credential.token : null);

describe('GitHub App mode: a repository the App is installed on', () => {
  let f: AppServer;
  before(async () => {
    f = await startAppServer('github-app', { app: { tokenTtlSeconds: 4 } });
  });
  after(async () => {
    await f.close();
  });

  test('a push posts its commit statuses with an installation token found with the App JWT', async () => {
    const sha = f.repo.head ?? '';
    await f.push(sha);
    const build = await f.waitForBuild(sha);
    assert.equal(build.state, 'success', build.description ?? '');
    const statuses = await f.github.waitFor(isStatusFor(sha), 2);
    assert.deepEqual(
      statuses.map((s) => (s.body as { state: string }).state),
      ['pending', 'success'],
    );
    for (const s of statuses) assert.equal(s.credential.kind === 'installation' && s.credential.installationId, 71);
    const appCalls = f.github.requests.filter((r) => r.credential.kind === 'jwt').map((r) => r.operationId);
    assert.ok(appCalls.includes('apps/get-repo-installation') && appCalls.includes('apps/create-installation-access-token'), appCalls.join());
    assert.deepEqual(f.github.rejected, []);
  });

  test('an installation token that expired is replaced: the statuses after it go with a new token', async () => {
    const last = f.github.issuedTokens.at(-1);
    assert.ok(last !== undefined);
    await new Promise((r) => setTimeout(r, last.expiresAt.getTime() - Date.now() + 100));
    const sha = await f.repo.commit({ 'message.txt': 'after the token expired\n' }, 'later');
    await f.push(sha);
    const build = await f.waitForBuild(sha);
    assert.equal(build.state, 'success', build.description ?? '');
    const statuses = await f.github.waitFor(isStatusFor(sha), 2);
    const expired = new Set(f.github.issuedTokens.filter((t) => t.expiresAt <= last.expiresAt).map((t) => t.token));
    for (const s of statuses) {
      const token = tokenOf(s);
      assert.ok(token !== null && !expired.has(token), 'posted with a token issued after the expired one');
    }
    assert.ok(f.github.issuedTokens.length >= 2);
    assert.deepEqual(f.github.rejected, [], 'no expired token was sent');
  });

  test('GET /api/github (protected) shows the mode, App id and installation, and no secret', async () => {
    assert.equal((await f.api('/api/github', false)).status, 401);
    const answer = await f.api('/api/github');
    assert.equal(answer.status, 200);
    const status = JSON.parse(answer.text) as GitHubAuthStatus;
    assert.deepEqual(status, { mode: 'app', appId: APP_ID, repositories: [{ repository: 'acme/widget', installationId: 71, error: null }] });
    for (const issued of f.github.issuedTokens) assert.ok(!answer.text.includes(issued.token));
  });

  test('webhook registration is skipped, said once in the log', () => {
    const said = f.lines().filter((l) => /webhooks are not registered per repository/.test(l.msg));
    assert.equal(said.length, 1);
    assert.equal(f.github.requests.filter((r) => r.operationId.startsWith('repos/') && r.operationId.includes('webhook')).length, 0);
  });

  test('an installation webhook is answered and logged, and the installation is found again', async () => {
    f.github.install('acme/widget', 72);
    assert.equal((JSON.parse((await f.api('/api/github')).text) as GitHubAuthStatus).repositories[0]?.installationId, 71, 'cached until told');
    const [example] = examplePayloads('installation_repositories').filter((p) => p['action'] === 'removed');
    assert.ok(example !== undefined);
    const installation = example['installation'] as Record<string, unknown>;
    installation['id'] = 71;
    (installation['account'] as Record<string, unknown>)['login'] = 'acme';
    example['repositories_removed'] = [{ id: 1, node_id: 'R_1', name: 'widget', full_name: 'acme/widget', private: true }];
    const response = await deliver(f.server.url, { event: 'installation_repositories', secret: SECRET, payload: example });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.deepEqual((response.body as { installation: unknown }).installation, {
      action: 'removed',
      installationId: 71,
      account: 'acme',
      added: [],
      removed: ['acme/widget'],
    });
    const logged = f.lines().find((l) => l.msg === 'delivery handled' && l['event'] === 'installation_repositories');
    assert.ok(logged !== undefined);
    assert.equal(logged['outcome'], 'installation');
    assert.equal(logged['account'], 'acme');
    assert.deepEqual(logged['removed'], ['acme/widget']);
    assert.equal((JSON.parse((await f.api('/api/github')).text) as GitHubAuthStatus).repositories[0]?.installationId, 72);

    const [created] = examplePayloads('installation').filter((p) => p['action'] === 'created');
    assert.ok(created !== undefined);
    const createdAnswer = await deliver(f.server.url, { event: 'installation', secret: SECRET, payload: created });
    assert.equal(createdAnswer.status, 200);
  });

  test('the private key and the installation tokens never reach the log', () => {
    assert.ok(KEY_LINE.length > 40);
    const text = f.logText();
    assert.ok(!text.includes(KEY_LINE));
    for (const issued of f.github.issuedTokens) assert.ok(!text.includes(issued.token));
  });
});

describe('GitHub App mode: a repository the App is not installed on', () => {
  let f: AppServer;
  before(async () => {
    f = await startAppServer('github-app-uninstalled', { app: { installations: {} } });
  });
  after(async () => {
    await f.close();
  });

  test('its build still runs; GET /api/github and the log say why nothing is posted', async () => {
    const sha = f.repo.head ?? '';
    await f.push(sha);
    const build = await f.waitForBuild(sha);
    assert.equal(build.state, 'success', build.description ?? '');

    const status = JSON.parse((await f.api('/api/github')).text) as GitHubAuthStatus;
    assert.equal(status.mode, 'app');
    const [widget] = status.repositories;
    assert.equal(widget?.installationId, null);
    assert.equal(widget.error?.code, 'GITHUB_APP_NOT_INSTALLED');
    assert.match(widget.error.message, /the GitHub App 31337 is not installed on acme\/widget/);

    const givenUp = async () => f.lines().filter((l) => l.msg === 'commit status refused by GitHub; given up').length;
    for (let i = 0; i < 100 && (await givenUp()) < 2; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await givenUp(), 2, 'pending and success, each given up once (not retried)');
    const reasons = f.lines().filter((l) => l.msg === 'GitHub App cannot reach the repository');
    assert.equal(reasons.length, 1, 'said once, however many calls met it');
    assert.equal(reasons[0]?.['code'], 'GITHUB_APP_NOT_INSTALLED');
    assert.equal(f.github.requests.filter((r) => r.operationId === 'repos/create-commit-status').length, 0);
    assert.equal(f.github.issuedTokens.length, 0);
  });
});

describe('GitHub App mode: a wrong private key', () => {
  test('a key GitHub refuses is a clear error at GET /api/github and in the log; builds run', async () => {
    const wrong = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const f = await startAppServer('github-app-wrong-key', { appConfig: { privateKey: wrong } });
    try {
      const sha = f.repo.head ?? '';
      await f.push(sha);
      assert.equal((await f.waitForBuild(sha)).state, 'success');
      const status = JSON.parse((await f.api('/api/github')).text) as GitHubAuthStatus;
      assert.equal(status.repositories[0]?.error?.code, 'GITHUB_APP_KEY_REFUSED');
      assert.match(status.repositories[0].error.message, /A JSON web token could not be decoded/);
      assert.ok(f.lines().some((l) => l.msg === 'GitHub App cannot reach the repository' && l['code'] === 'GITHUB_APP_KEY_REFUSED'));
      assert.ok(f.github.rejected.length > 0 && f.github.rejected.every((r) => r.status === 401));
      assert.ok(!f.logText().includes(wrong.split('\n')[2] ?? 'x'));
    } finally {
      await f.close();
    }
  });

  test('a key file that holds no key is a clear error, and the server starts', async () => {
    const dir = await makeTestDir('github-app-bad-key-file');
    const file = join(dir, 'app.pem');
    await writeFile(file, 'this is not a key\n', { mode: 0o600 });
    const f = await startAppServer('github-app-bad-key', { appConfig: { privateKey: undefined, privateKeyPath: file } });
    try {
      const status = JSON.parse((await f.api('/api/github')).text) as GitHubAuthStatus;
      assert.equal(status.repositories[0]?.error?.code, 'GITHUB_APP_KEY_INVALID');
      assert.match(status.repositories[0].error.message, /app\.pem/);
      assert.equal(f.github.requests.length + f.github.rejected.length, 0, 'nothing is sent to GitHub');
    } finally {
      await f.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('toConfigRepositorySource in GitHub App mode', () => {
  test("asks for the config repository's installation token at each fetch and sends it only to the GitHub host", async () => {
    const config = loadConfig(
      { github: { apiUrl: 'https://ghe.example/api/v3', app: { appId: 1, privateKey: PRIVATE_KEY } }, configRepository: { repository: 'acme/config' } },
      {},
    );
    const asked: string[] = [];
    const source = toConfigRepositorySource(config, { gitTokenFor: async (repository) => `ghs_${asked.push(repository)}` });
    assert.ok(source.kind === 'git' && typeof source.env === 'function', 'a git source whose environment is made at each fetch');
    const first = await source.env();
    const second = await source.env();
    assert.deepEqual(asked, ['acme/config', 'acme/config']);
    assert.equal(first['GIT_CONFIG_VALUE_0'], `Authorization: Basic ${Buffer.from('x-access-token:ghs_1').toString('base64')}`);
    assert.equal(second['GIT_CONFIG_VALUE_0'], `Authorization: Basic ${Buffer.from('x-access-token:ghs_2').toString('base64')}`);

    const elsewhere = toConfigRepositorySource(
      loadConfig({ github: { app: { appId: 1, privateKey: PRIVATE_KEY } }, configRepository: { url: 'https://git.example/acme/config.git' } }, {}),
      { gitTokenFor: async () => 'ghs_never' },
    );
    assert.ok(elsewhere.kind === 'git' && typeof elsewhere.env === 'function');
    assert.deepEqual(await elsewhere.env(), {});
  });

  test('token mode keeps its fixed environment', () => {
    const source = toConfigRepositorySource(loadConfig({ github: { token: 'ghp_x' }, configRepository: { repository: 'acme/config' } }, {}));
    assert.ok(source.kind === 'git' && typeof source.env === 'object');
    assert.equal(source.env['GIT_CONFIG_VALUE_0'], `Authorization: Basic ${Buffer.from('x-access-token:ghp_x').toString('base64')}`);
  });
});
