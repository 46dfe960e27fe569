import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createGitRepository, type GitRepository } from '../../test/support/git-repository.js';
import { startGitHttpsHost, type GitHttpsHost } from '../../test/support/git-https-host.js';
import { startGitHubStandIn, type GitHubStandIn } from '../../test/support/github-stand-in.js';
import { isAppError } from '../errors.js';
import { createGitHubAppAuth } from '../github/github-app-auth.js';
import type { GitHubAuth } from '../github/github-auth.js';
import { createLogger } from '../logger.js';
import { createCheckout, gitAuthEnvFor, toRepositoryOfUrl, type Checkout } from './checkout.js';

describe('toRepositoryOfUrl', () => {
  test('names owner/name of an https URL of the host, with or without .git', () => {
    assert.equal(toRepositoryOfUrl('https://github.com/acme/widget.git', 'github.com'), 'acme/widget');
    assert.equal(toRepositoryOfUrl('https://github.com/acme/widget', 'github.com'), 'acme/widget');
    assert.equal(toRepositoryOfUrl('https://ghe.example:8443/acme/w.x.git', 'ghe.example:8443'), 'acme/w.x');
  });
  test('is null for another host, scheme or path', () => {
    assert.equal(toRepositoryOfUrl('https://evil.example/acme/widget.git', 'github.com'), null);
    assert.equal(toRepositoryOfUrl('http://github.com/acme/widget.git', 'github.com'), null);
    assert.equal(toRepositoryOfUrl('file:///srv/acme/widget', 'github.com'), null);
    assert.equal(toRepositoryOfUrl('https://github.com/acme/widget/extra.git', 'github.com'), null);
    assert.equal(toRepositoryOfUrl('/srv/acme/widget', 'github.com'), null);
  });
});

describe('gitAuthEnvFor', () => {
  test('asks for a token of the repository the URL names, at each call, and sends it as x-access-token', async () => {
    const asked: string[] = [];
    const credentials = { host: 'github.com', tokenFor: async (repository: string) => `ghs_${asked.push(repository)}` };
    const first = await gitAuthEnvFor('https://github.com/acme/widget.git', credentials);
    const second = await gitAuthEnvFor('https://github.com/acme/widget.git', credentials);
    assert.deepEqual(asked, ['acme/widget', 'acme/widget']);
    assert.equal(first.env['GIT_CONFIG_VALUE_0'], `Authorization: Basic ${Buffer.from('x-access-token:ghs_1').toString('base64')}`);
    assert.equal(second.env['GIT_CONFIG_VALUE_0'], `Authorization: Basic ${Buffer.from('x-access-token:ghs_2').toString('base64')}`);
  });
  test('asks nothing for a URL of another host', async () => {
    let asked = 0;
    const credentials = { host: 'github.com', tokenFor: async () => `ghs_${++asked}` };
    assert.deepEqual(await gitAuthEnvFor('https://mirror.example/acme/widget.git', credentials), { env: {}, problem: null });
    assert.deepEqual(await gitAuthEnvFor('file:///srv/widget', credentials), { env: {}, problem: null });
    assert.equal(asked, 0);
  });
  test('goes without a token, saying why, when there is none for the repository', async () => {
    const credentials = { host: 'github.com', tokenFor: () => Promise.reject(new Error('the App is not installed there')) };
    assert.deepEqual(await gitAuthEnvFor('https://github.com/acme/widget.git', credentials), {
      env: {},
      problem: 'no GitHub token for acme/widget: the App is not installed there',
    });
  });
});

describe('fetching a private repository with GitHub App installation tokens (git smart HTTP over TLS)', () => {
  const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });
  let dir = '';
  let github: GitHubStandIn;
  let host: GitHttpsHost;
  let work: GitRepository & { head: string | null };
  let auth: GitHubAuth;
  let checkout: Checkout;
  let home: string | undefined;
  const asked: string[] = [];
  const sync = (repository: string) => execFileSync('git', ['push', '--quiet', '--force', join(dir, 'root', `${repository}.git`), 'main'], { cwd: work.dir });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'autobuilder-private-'));
    github = await startGitHubStandIn({
      app: {
        appId: 9,
        publicKeyPem: keys.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
        tokenTtlSeconds: 4,
        installations: { 'acme/private': 31 },
      },
    });
    work = await createGitRepository(join(dir, 'work'));
    await work.commit({ 'README.md': 'private\n' }, 'first');
    for (const repository of ['acme/private', 'acme/not-installed']) {
      await mkdir(join(dir, 'root', repository.split('/')[0] ?? ''), { recursive: true });
      execFileSync('git', ['init', '--quiet', '--bare', join(dir, 'root', `${repository}.git`)]);
      sync(repository);
    }
    // the git host serves a repository only with an unexpired token of the installation it is in, as GitHub does
    host = await startGitHttpsHost({
      root: join(dir, 'root'),
      authorize: (repository, token) =>
        github.issuedTokens.some((t) => t.token === token && t.expiresAt.getTime() > Date.now() && repository === 'acme/private' && t.installationId === 31),
    });
    home = process.env['HOME'];
    process.env['HOME'] = host.gitHome;
    auth = createGitHubAppAuth({
      apiUrl: github.url,
      app: { appId: 9, privateKey: keys.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString() },
      log: createLogger({ level: 'silent' }),
    });
    checkout = createCheckout({
      mirrorsDir: join(dir, 'mirrors'),
      credentials: {
        host: host.host,
        tokenFor: (repository) => {
          asked.push(repository);
          return auth.gitTokenFor(repository);
        },
      },
    });
  });
  after(async () => {
    if (home !== undefined) process.env['HOME'] = home;
    auth.close();
    await host.close();
    await github.close();
    await rm(dir, { recursive: true, force: true });
  });

  const url = (repository: string) => `https://${host.host}/${repository}.git`;

  test('fetches a commit and resolves a branch with the installation token', async () => {
    const sha = await work.commit({ 'a.txt': 'a\n' }, 'a');
    sync('acme/private');
    const fetched = await checkout.fetch({ owner: 'acme', repo: 'private', cloneUrl: url('acme/private'), sha, paths: ['a.txt'] });
    assert.equal(fetched.tree, await work.treeOf(sha));
    assert.equal(typeof fetched.blobs[0], 'string');
    assert.equal(await checkout.resolveRef({ cloneUrl: url('acme/private'), ref: 'refs/heads/main' }), sha);

    const issued = new Set(github.issuedTokens.map((t) => t.token));
    assert.ok(issued.size >= 1);
    assert.ok(host.requests.filter((r) => r.status === 200).length >= 2, JSON.stringify(host.requests));
    assert.ok(
      host.requests.every((r) => r.token !== null && issued.has(r.token) && r.status === 200),
      `every request carried an installation token: ${JSON.stringify(host.requests)}`,
    );
    assert.deepEqual(asked, ['acme/private', 'acme/private'], 'a token is asked for at each fetch and ls-remote');
  });

  test('a fetch after the token expired goes with a new token', async () => {
    const last = github.issuedTokens.at(-1);
    assert.ok(last !== undefined);
    await new Promise((resolve) => setTimeout(resolve, last.expiresAt.getTime() - Date.now() + 100));
    const before = github.issuedTokens.length;
    const sha = await work.commit({ 'b.txt': 'b\n' }, 'b');
    sync('acme/private');
    host.requests.length = 0;
    const fetched = await checkout.fetch({ owner: 'acme', repo: 'private', cloneUrl: url('acme/private'), sha, paths: [] });
    assert.equal(fetched.tree, await work.treeOf(sha));
    assert.equal(github.issuedTokens.length, before + 1, 'one new token');
    const fresh = github.issuedTokens.at(-1)?.token;
    assert.ok(host.requests.length > 0 && host.requests.every((r) => r.token === fresh && r.status === 200), JSON.stringify(host.requests));
  });

  test('a repository the App is not installed on fails with the reason, and no token is sent', async () => {
    host.requests.length = 0;
    const sha = work.head ?? (await work.commit({ 'c.txt': 'c\n' }, 'c'));
    const error = await checkout.fetch({ owner: 'acme', repo: 'not-installed', cloneUrl: url('acme/not-installed'), sha, paths: [] }).then(
      () => null,
      (err: unknown) => err,
    );
    assert.ok(isAppError(error, 'GIT_FAILED'), String(error));
    assert.match(error.message, /no GitHub token for acme\/not-installed: the GitHub App 9 is not installed on acme\/not-installed/);
    assert.ok(host.requests.length > 0 && host.requests.every((r) => r.token === null && r.status === 401));
  });
});
