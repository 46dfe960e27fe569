import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test, type TestContext } from 'node:test';
import { startGitHubStandIn, type GitHubStandIn, type GitHubStandInAppOptions } from '../../test/support/github-stand-in.js';
import { createLogger } from '../logger.js';
import { createPieceMasker, createSecretMasker } from '../builds/secret-masker.js';
import { createGitHubAppAuth, readGitHubAppKey, toKeyMaskValues, toRefreshAt, TOKEN_REFRESH_MARGIN_MS } from './github-app-auth.js';
import { GitHubAuthError, type GitHubAuth } from './github-auth.js';

const APP_ID = 4242;
const SHA = '0123456789abcdef0123456789abcdef01234567';

/** A fresh RSA key pair, as GitHub issues for an App (made at test time: no key is committed). */
function keyPair(): { privateKey: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    privateKey: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** A logger whose JSON lines the test reads, and its raw text (to look for secrets). */
function capturedLogger() {
  const out = new PassThrough();
  let text = '';
  out.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  return {
    log: createLogger({ level: 'debug', destination: out }),
    text: () => text,
    lines: () =>
      text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as { level: number; msg: string; repository?: string; code?: string; err?: string }),
  };
}

const key = keyPair();

async function standIn(t: TestContext, app: Partial<GitHubStandInAppOptions> = {}): Promise<GitHubStandIn> {
  const github = await startGitHubStandIn({
    app: { appId: APP_ID, publicKeyPem: key.publicKey, installations: { 'acme/widget': 101, 'acme/gadget': 101, 'other/tool': 202 }, ...app },
  });
  t.after(() => github.close());
  return github;
}

function appAuth(
  t: TestContext,
  github: GitHubStandIn,
  changes: { privateKey?: string; privateKeyPath?: string; now?: () => number } = {},
  log = capturedLogger(),
): GitHubAuth {
  const auth = createGitHubAppAuth({
    apiUrl: github.url,
    app: {
      appId: APP_ID,
      ...(changes.privateKeyPath === undefined ? { privateKey: changes.privateKey ?? key.privateKey } : { privateKeyPath: changes.privateKeyPath }),
    },
    log: log.log,
    ...(changes.now === undefined ? {} : { now: changes.now }),
  });
  t.after(() => auth.close());
  return auth;
}

const postStatus = async (auth: GitHubAuth, repository: string) => {
  const [owner = '', repo = ''] = repository.split('/');
  const octokit = await auth.octokitFor(repository);
  return octokit.rest.repos.createCommitStatus({ owner, repo, sha: SHA, state: 'pending', context: 'autobuilder/test' });
};

const rejection = async (promise: Promise<unknown>): Promise<GitHubAuthError> => {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(err instanceof GitHubAuthError, `expected a GitHubAuthError, got ${String(err)}`);
  return err;
};

describe('toRefreshAt', () => {
  test('replaces an hour-long token five minutes before it expires', () => {
    assert.equal(toRefreshAt({ obtainedAt: 0, expiresAt: 3_600_000 }), 3_600_000 - TOKEN_REFRESH_MARGIN_MS);
  });
  test('replaces a two-second token a quarter of its life before it expires', () => {
    assert.equal(toRefreshAt({ obtainedAt: 10_000, expiresAt: 12_000 }), 11_500);
  });
});

describe('toKeyMaskValues', () => {
  test('a build log that prints the key shows none of it, line by line or cut anywhere', () => {
    const mask = createSecretMasker(toKeyMaskValues(key.privateKey));
    const lines = key.privateKey.trim().split('\n');
    const masked = lines.map((line) => mask(`leak: ${line}`));
    const body = lines.slice(1, -1);
    assert.ok(body.length > 10);
    for (const [i, line] of body.entries()) assert.equal(masked[i + 1], 'leak: ***', line);
    const pieces = createPieceMasker(mask);
    const cut = body[3] ?? '';
    const out = `${pieces.piece(`x ${cut.slice(0, 20)}`, false) ?? ''}${pieces.piece(`${cut.slice(20)} y`, true) ?? ''}`;
    assert.equal(out, 'x *** y');
  });
});

describe('readGitHubAppKey', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'autobuilder-app-key-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('reads a PKCS#1 key from a file', async () => {
    const file = join(dir, 'app.pem');
    await writeFile(file, key.privateKey, { mode: 0o600 });
    assert.equal(await readGitHubAppKey({ privateKeyPath: file }), key.privateKey);
  });

  test('refuses a file that is missing, naming the file', async () => {
    const err = await rejection(readGitHubAppKey({ privateKeyPath: join(dir, 'missing.pem') }));
    assert.equal(err.code, 'GITHUB_APP_KEY_INVALID');
    assert.match(err.message, /missing\.pem/);
  });

  test('refuses text that is no private key, without quoting it', async () => {
    const garbage = '-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END RSA PRIVATE KEY-----\n';
    const err = await rejection(readGitHubAppKey({ privateKey: garbage }));
    assert.equal(err.code, 'GITHUB_APP_KEY_INVALID');
    assert.doesNotMatch(err.message, /bm90IGEga2V5/);
  });

  test('refuses a key that is not RSA', async () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const err = await rejection(readGitHubAppKey({ privateKey: ec }));
    assert.equal(err.code, 'GITHUB_APP_KEY_INVALID');
    assert.match(err.message, /ec key/);
  });
});

describe('createGitHubAppAuth against the GitHub stand-in in App mode', () => {
  test('finds the installation with a JWT and calls GitHub with its installation token', async (t) => {
    const github = await standIn(t);
    const auth = appAuth(t, github);
    assert.equal(auth.mode, 'app');
    const response = await postStatus(auth, 'acme/widget');
    assert.equal(response.status, 201);

    assert.deepEqual(github.rejected, []);
    const ops = github.requests.map((r) => `${r.operationId} ${r.credential.kind}`);
    assert.deepEqual(ops, ['apps/get-repo-installation jwt', 'apps/create-installation-access-token jwt', 'repos/create-commit-status installation']);
    const [issued] = github.issuedTokens;
    assert.ok(issued !== undefined);
    assert.equal(issued.installationId, 101);
    assert.deepEqual(github.requests[2]?.credential, { kind: 'installation', installationId: 101, token: issued.token });
  });

  test('asks once per repository and once per installation, also for calls made at the same time', async (t) => {
    const github = await standIn(t);
    const auth = appAuth(t, github);
    await Promise.all([postStatus(auth, 'acme/widget'), postStatus(auth, 'acme/widget'), postStatus(auth, 'acme/gadget')]);
    await postStatus(auth, 'acme/widget');
    assert.equal(await auth.gitTokenFor('acme/gadget'), github.issuedTokens[0]?.token);

    const count = (operationId: string) => github.requests.filter((r) => r.operationId === operationId).length;
    assert.equal(count('apps/get-repo-installation'), 2, 'acme/widget and acme/gadget, each once');
    assert.equal(count('apps/create-installation-access-token'), 1, 'both are in installation 101');
    assert.equal(count('repos/create-commit-status'), 4);
    assert.deepEqual(github.rejected, []);
  });

  test('replaces a token before it expires: the call after its expiry succeeds with a new one', async (t) => {
    const github = await standIn(t, { tokenTtlSeconds: 2 });
    const auth = appAuth(t, github);
    await postStatus(auth, 'acme/widget');
    const first = github.issuedTokens[0];
    assert.ok(first !== undefined);
    await new Promise((resolve) => setTimeout(resolve, first.expiresAt.getTime() - Date.now() + 200));

    const response = await postStatus(auth, 'acme/widget');
    assert.equal(response.status, 201);
    assert.equal(github.issuedTokens.length, 2, 'a second token was issued');
    const second = github.issuedTokens[1];
    const statuses = github.requests.filter((r) => r.operationId === 'repos/create-commit-status');
    assert.deepEqual(
      statuses.map((r) => (r.credential.kind === 'installation' ? r.credential.token : null)),
      [first.token, second?.token],
    );
    assert.deepEqual(github.rejected, [], 'the expired token was never sent');
  });

  test('gives a worker a token that stays valid long enough, asking for a new one when the held one would not', async (t) => {
    const github = await standIn(t, { tokenTtlSeconds: 600 });
    const auth = appAuth(t, github);
    const held = await auth.gitTokenFor('acme/widget');
    assert.equal(await auth.gitTokenFor('acme/widget', { validForMs: 60_000 }), held);
    const longer = await auth.gitTokenFor('acme/widget', { validForMs: 30 * 60_000 });
    assert.notEqual(longer, held);
    assert.equal(github.issuedTokens.length, 2);
  });

  test('an uninstalled repository is a clear error, logged once, and the status says it', async (t) => {
    const github = await standIn(t);
    const log = capturedLogger();
    const auth = appAuth(t, github, {}, log);
    const err = await rejection(auth.octokitFor('acme/private-thing'));
    assert.equal(err.code, 'GITHUB_APP_NOT_INSTALLED');
    assert.match(err.message, /GitHub App 4242 is not installed on acme\/private-thing/);
    await rejection(auth.gitTokenFor('acme/private-thing'));

    const status = await auth.status(['acme/widget', 'acme/private-thing']);
    assert.deepEqual(status.appId, APP_ID);
    assert.deepEqual(status.repositories[0], { repository: 'acme/widget', installationId: 101, error: null });
    assert.equal(status.repositories[1]?.installationId, null);
    assert.equal(status.repositories[1].error?.code, 'GITHUB_APP_NOT_INSTALLED');

    const errors = log.lines().filter((l) => l.repository === 'acme/private-thing' && l.code === 'GITHUB_APP_NOT_INSTALLED');
    assert.equal(errors.length, 1, 'logged once, not at every call');
    assert.equal(errors[0]?.msg, 'GitHub App cannot reach the repository');
    assert.equal(github.requests.filter((r) => r.params['repo'] === 'private-thing').length, 1, 'the answer is believed a while');
  });

  test('a key GitHub refuses is a clear error at every call, never a crash', async (t) => {
    const github = await standIn(t);
    const log = capturedLogger();
    const wrong = keyPair().privateKey;
    const auth = appAuth(t, github, { privateKey: wrong }, log);
    const err = await rejection(postStatus(auth, 'acme/widget'));
    assert.equal(err.code, 'GITHUB_APP_KEY_REFUSED');
    assert.match(err.message, /A JSON web token could not be decoded/);
    assert.match(err.message, /github\.app\.appId \(4242\)/);
    const status = await auth.status(['acme/widget']);
    assert.equal(status.repositories[0]?.error?.code, 'GITHUB_APP_KEY_REFUSED');
    assert.deepEqual(
      github.rejected.map((r) => r.status),
      [401],
    );
    assert.equal(github.issuedTokens.length, 0);
    const body = wrong.split('\n')[1] ?? '';
    assert.ok(body.length > 20 && !log.text().includes(body), 'no line of the key is logged');
  });

  test('a key that cannot be read is a clear error, and nothing is sent', async (t) => {
    const github = await standIn(t);
    const auth = appAuth(t, github, { privateKeyPath: join(tmpdir(), 'autobuilder-no-such-key.pem') });
    const err = await rejection(auth.gitTokenFor('acme/widget'));
    assert.equal(err.code, 'GITHUB_APP_KEY_INVALID');
    assert.equal(github.requests.length + github.rejected.length, 0);
  });

  test('forget drops the installation, so that the next call finds the new one', async (t) => {
    const github = await standIn(t);
    const auth = appAuth(t, github);
    await rejection(auth.octokitFor('acme/new-one'));
    github.install('acme/new-one', 303);
    await rejection(auth.octokitFor('acme/new-one')); // still believed: not installed
    auth.forget({ repositories: ['acme/new-one'] });
    await postStatus(auth, 'acme/new-one');
    assert.equal(github.issuedTokens.at(-1)?.installationId, 303);

    // an installation removed: its repositories and its token are dropped
    github.install('acme/new-one', null);
    auth.forget({ installationId: 303 });
    assert.equal((await rejection(auth.octokitFor('acme/new-one'))).code, 'GITHUB_APP_NOT_INSTALLED');
  });

  test('a token refused before its time is replaced once, and the request goes through', async (t) => {
    const github = await standIn(t);
    let skew = 0;
    const auth = appAuth(t, github, { now: () => Date.now() + skew });
    await postStatus(auth, 'acme/widget');
    // GitHub revokes the token early (as DELETE /installation/token would)
    const first = github.issuedTokens[0];
    assert.ok(first !== undefined);
    first.expiresAt = new Date(0);
    // not a token just made (that gets the replication wait instead): held for a minute
    skew = 60_000;
    const response = await postStatus(auth, 'acme/widget');
    assert.equal(response.status, 201);
    assert.equal(github.issuedTokens.length, 2);
    assert.equal(github.rejected.length, 1, 'the one refusal of the revoked token');
  });
});
