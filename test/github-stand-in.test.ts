import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { Octokit } from '@octokit/rest';
import { GitHubStandInError, startGitHubStandIn, type GitHubStandIn } from './support/github-stand-in.js';

const owner = 'octo-org';
const repo = 'hello-world';
const sha = 'a94a8fe5ccb19ba61c4c0873d391e987982fbbd3';
const targetUrl = 'http://ci.example.test/builds/42';

const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

async function start(t: TestContext): Promise<GitHubStandIn> {
  const standIn = await startGitHubStandIn();
  t.after(() => standIn.close());
  return standIn;
}

function octokitFor(standIn: GitHubStandIn, auth: string | null = 'test-token'): Octokit {
  return new Octokit({ baseUrl: standIn.url, log: silent, ...(auth === null ? {} : { auth }) });
}

// Typed as plain strings so Octokit's route types let these tests send what its types forbid.
const createStatusRoute: string = 'POST /repos/{owner}/{repo}/statuses/{sha}';
const getIssueRoute: string = 'GET /repos/{owner}/{repo}/issues/{issue_number}';
const listStatusesRoute: string = 'GET /repos/{owner}/{repo}/commits/{ref}/statuses';

/** The parts of Octokit's RequestError these tests read (`@octokit/request-error` is not a direct dependency). */
interface HttpFailure {
  status: number;
  response?: { data: unknown };
}

/** Awaits a promise that must fail with an Octokit RequestError, and returns it. */
async function requestError(promise: Promise<unknown>): Promise<HttpFailure> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof Error && error.name === 'HttpError' && 'status' in error, `expected an Octokit RequestError, got ${String(error)}`);
    return error as Error & HttpFailure;
  }
  assert.fail('the request was expected to fail');
}

test('records a commit status created through Octokit and echoes it back', async (t) => {
  const standIn = await start(t);
  const response = await octokitFor(standIn).rest.repos.createCommitStatus({
    owner,
    repo,
    sha,
    state: 'pending',
    context: 'autobuilder/x',
    target_url: targetUrl,
    description: 'Build queued',
  });

  assert.equal(response.status, 201);
  assert.equal(response.data.state, 'pending');
  assert.equal(response.data.context, 'autobuilder/x');
  assert.equal(response.data.target_url, targetUrl);
  assert.equal(response.data.description, 'Build queued');
  assert.equal(standIn.rejected.length, 0);
  assert.equal(standIn.requests.length, 1);
  const [recorded] = standIn.requests;
  assert.ok(recorded);
  assert.equal(recorded.method, 'POST');
  assert.equal(recorded.path, `/repos/${owner}/${repo}/statuses/${sha}`);
  assert.equal(recorded.operationId, 'repos/create-commit-status');
  assert.deepEqual(recorded.params, { owner, repo, sha });
  assert.deepEqual(recorded.body, { state: 'pending', context: 'autobuilder/x', target_url: targetUrl, description: 'Build queued' });
  assert.equal(recorded.headers['authorization'], 'token test-token');
});

test('answers 422 and records the reason when a status has an invalid state', async (t) => {
  const standIn = await start(t);
  const error = await requestError(octokitFor(standIn).request(createStatusRoute, { owner, repo, sha, state: 'bogus', context: 'autobuilder/x' }));

  assert.equal(error.status, 422);
  assert.equal(standIn.requests.length, 0);
  assert.equal(standIn.rejected.length, 1);
  const [rejected] = standIn.rejected;
  assert.equal(rejected?.status, 422);
  assert.equal(rejected.path, `/repos/${owner}/${repo}/statuses/${sha}`);
  assert.ok(
    rejected.errors.some((reason) => reason.includes('state')),
    `reasons: ${rejected.errors.join('; ')}`,
  );
});

test('answers 422 when a required body property is missing', async (t) => {
  const standIn = await start(t);
  const error = await requestError(octokitFor(standIn).request(createStatusRoute, { owner, repo, sha, context: 'x' }));

  assert.equal(error.status, 422);
  assert.deepEqual(standIn.rejected[0]?.errors, ['body: state is required']);
});

test('accepts null where the description marks a property nullable', async (t) => {
  const standIn = await start(t);
  const octokit = octokitFor(standIn);
  // `target_url` is `{type: string, nullable: true}`.
  await octokit.rest.repos.createCommitStatus({ owner, repo, sha, state: 'success', target_url: null, description: null });
  // `milestone` is a nullable `oneOf` without `type`; `state_reason` a nullable enum without null.
  await octokit.rest.issues.update({ owner, repo, issue_number: 7, milestone: null, state_reason: null });

  assert.deepEqual(standIn.rejected, []);
  assert.deepEqual(
    standIn.requests.map((r) => r.operationId),
    ['repos/create-commit-status', 'issues/update'],
  );
});

test('coerces and checks query and path parameters against their declared types', async (t) => {
  const standIn = await start(t);
  const octokit = octokitFor(standIn);
  await octokit.rest.repos.listCommitStatusesForRef({ owner, repo, ref: sha, per_page: 5 });
  const badQuery = await requestError(octokit.request(listStatusesRoute, { owner, repo, ref: sha, per_page: 'many' }));
  const badPath = await requestError(octokit.request(getIssueRoute, { owner, repo, issue_number: 'seven' }));

  assert.equal(badQuery.status, 422);
  assert.equal(badPath.status, 422);
  assert.deepEqual(standIn.requests[0]?.query, { per_page: '5' });
  assert.deepEqual(
    standIn.rejected.map((r) => r.errors),
    [['query: per_page must be integer'], ['path: issue_number must be integer']],
  );
});

test('matches multi-segment parameters such as a ref containing slashes', async (t) => {
  const standIn = await start(t);
  await octokitFor(standIn).rest.git.getRef({ owner, repo, ref: 'heads/feature/x' });

  assert.equal(standIn.requests[0]?.operationId, 'git/get-ref');
  assert.equal(standIn.requests[0].params['ref'], 'heads/feature/x');
});

test('answers 404 with a GitHub-style error for a path GitHub does not have', async (t) => {
  const standIn = await start(t);
  const error = await requestError(octokitFor(standIn).request('GET /repos/{owner}/{repo}/no-such-thing', { owner, repo }));

  assert.equal(error.status, 404);
  assert.deepEqual(error.response?.data, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest', status: '404' });
  assert.equal(standIn.requests.length, 0);
  assert.equal(standIn.rejected[0]?.status, 404);
  assert.equal(standIn.rejected[0].path, `/repos/${owner}/${repo}/no-such-thing`);
});

test('answers 401 and records a rejection when the authorization header is missing or malformed', async (t) => {
  const standIn = await start(t);
  const missing = await requestError(octokitFor(standIn, null).rest.repos.createCommitStatus({ owner, repo, sha, state: 'success' }));
  const malformed = await fetch(`${standIn.url}/repos/${owner}/${repo}/statuses/${sha}`, {
    method: 'POST',
    headers: { authorization: 'Basic dXNlcjpwYXNz', 'user-agent': 'test', 'content-type': 'application/json' },
    body: JSON.stringify({ state: 'success' }),
  });

  assert.equal(missing.status, 401);
  assert.equal(malformed.status, 401);
  assert.equal(standIn.requests.length, 0);
  assert.deepEqual(
    standIn.rejected.map((r) => [r.status, r.errors]),
    [
      [401, ['authorization header is missing']],
      [401, ['authorization header is not "token X" or "Bearer X"']],
    ],
  );
});

test('answers 403 when the user-agent header is missing', async (t) => {
  const standIn = await start(t);
  // undici's fetch adds a user-agent unless one is given, so send an empty one.
  const response = await fetch(`${standIn.url}/repos/${owner}/${repo}/statuses/${sha}`, {
    method: 'POST',
    headers: { authorization: 'token test-token', 'user-agent': '' },
    body: JSON.stringify({ state: 'success' }),
  });

  assert.equal(response.status, 403);
  assert.deepEqual(standIn.rejected[0]?.errors, ['user-agent header is missing']);
});

test('fails every request with the failWith status until it is cleared', async (t) => {
  const standIn = await start(t);
  const octokit = octokitFor(standIn);
  standIn.failWith(502);
  const error = await requestError(octokit.rest.repos.createCommitStatus({ owner, repo, sha, state: 'pending' }));

  assert.equal(error.status, 502);
  assert.equal(standIn.failedCount, 1);
  assert.equal(standIn.requests.length, 0);
  assert.equal(standIn.rejected.length, 0);

  standIn.failWith(null);
  const response = await octokit.rest.repos.createCommitStatus({ owner, repo, sha, state: 'success' });
  assert.equal(response.status, 201);
  assert.equal(standIn.requests.length, 1);
  assert.equal(standIn.failedCount, 1);
});

test('waitFor resolves once enough matching requests have arrived', async (t) => {
  const standIn = await start(t);
  const octokit = octokitFor(standIn);
  const isStatus = (r: { operationId: string }): boolean => r.operationId === 'repos/create-commit-status';
  const waiting = standIn.waitFor(isStatus, 2, 5_000);
  await octokit.rest.repos.createCommitStatus({ owner, repo, sha, state: 'pending' });
  await octokit.rest.repos.get({ owner, repo });
  await octokit.rest.repos.createCommitStatus({ owner, repo, sha, state: 'success' });

  const statuses = await waiting;
  assert.deepEqual(
    statuses.map((r) => (r.body as { state: string }).state),
    ['pending', 'success'],
  );
  // Already-recorded requests count too.
  assert.equal((await standIn.waitFor((r) => r.operationId === 'repos/get', 1, 10)).length, 1);
});

test('waitFor times out with a message listing what was recorded', async (t) => {
  const standIn = await start(t);
  await octokitFor(standIn).rest.repos.createCommitStatus({ owner, repo, sha, state: 'pending' });

  await assert.rejects(
    standIn.waitFor((r) => r.operationId === 'checks/create', 1, 50),
    (error: unknown) => {
      assert.ok(error instanceof GitHubStandInError);
      assert.equal(error.code, 'GITHUB_STAND_IN_TIMEOUT');
      assert.match(error.message, /timed out after 50 ms/);
      assert.match(error.message, new RegExp(`POST /repos/${owner}/${repo}/statuses/${sha} repos/create-commit-status`));
      return true;
    },
  );
});

// ---------------------------------------------------------------------------------------------
// App mode: JWTs, installations and installation tokens.

const appKeys = generateKeyPairSync('rsa', { modulusLength: 2048 });
const APP_ID = 777;

/** A JWT signed (RS256) with `key`, with the claims given (GitHub's: iss, iat, exp). */
function jwt(claims: Record<string, unknown>, key: KeyObject = appKeys.privateKey): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${part({ alg: 'RS256', typ: 'JWT' })}.${part(claims)}`;
  return `${unsigned}.${sign('RSA-SHA256', Buffer.from(unsigned), key).toString('base64url')}`;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);
const goodClaims = () => ({ iss: APP_ID, iat: nowSeconds() - 30, exp: nowSeconds() + 540 });

async function startApp(t: TestContext, tokenTtlSeconds = 3600): Promise<GitHubStandIn> {
  const standIn = await startGitHubStandIn({
    app: {
      appId: APP_ID,
      publicKeyPem: appKeys.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      tokenTtlSeconds,
      installations: { [`${owner}/${repo}`]: 55 },
    },
  });
  t.after(() => standIn.close());
  return standIn;
}

/** POST /app/installations/{id}/access_tokens with `bearer`, as the raw answer. */
async function createToken(standIn: GitHubStandIn, bearer: string, installationId = 55) {
  const response = await fetch(`${standIn.url}/app/installations/${installationId}/access_tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${bearer}`, 'user-agent': 'test', accept: 'application/vnd.github+json' },
  });
  return { status: response.status, body: (await response.json()) as { token?: string; expires_at?: string; message?: string } };
}

test('app mode: finds the installation and issues a token for a JWT signed with the App key', async (t) => {
  const standIn = await startApp(t);
  const app = new Octokit({ baseUrl: standIn.url, log: silent, auth: jwt(goodClaims()) });
  const installation = await app.rest.apps.getRepoInstallation({ owner, repo });
  assert.equal(installation.data.id, 55);
  assert.equal(installation.data.app_id, APP_ID);

  const issued = await createToken(standIn, jwt(goodClaims()));
  assert.equal(issued.status, 201);
  assert.match(issued.body.token ?? '', /^ghs_[0-9a-f]{36}$/);
  assert.match(issued.body.expires_at ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.deepEqual(
    standIn.issuedTokens.map((i) => [i.token, i.installationId]),
    [[issued.body.token, 55]],
  );

  const installed = new Octokit({ baseUrl: standIn.url, log: silent, auth: issued.body.token });
  await installed.rest.repos.createCommitStatus({ owner, repo, sha, state: 'success' });
  assert.deepEqual(
    standIn.requests.map((r) => r.credential),
    [
      { kind: 'jwt', appId: APP_ID },
      { kind: 'jwt', appId: APP_ID },
      { kind: 'installation', installationId: 55, token: issued.body.token },
    ],
  );
  assert.deepEqual(standIn.rejected, []);
});

test('app mode: refuses JWTs GitHub refuses, with GitHub’s messages', async (t) => {
  const standIn = await startApp(t);
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const cases: [string, string][] = [
    [jwt(goodClaims(), other), 'A JSON web token could not be decoded'],
    [jwt({ ...goodClaims(), iss: APP_ID + 1 }), 'A JSON web token could not be decoded'],
    ['not.a-jwt', 'A JSON web token could not be decoded'],
    [
      jwt({ ...goodClaims(), iat: nowSeconds() + 120, exp: nowSeconds() + 600 }),
      "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
    ],
    [
      jwt({ ...goodClaims(), iat: nowSeconds() - 700, exp: nowSeconds() - 100 }),
      "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
    ],
    [jwt({ ...goodClaims(), exp: nowSeconds() + 900 }), "'Expiration time' claim ('exp') is too far in the future"],
  ];
  for (const [bearer, message] of cases) {
    const answer = await createToken(standIn, bearer);
    assert.equal(answer.status, 401, message);
    assert.equal(answer.body.message, message);
  }
  // a JWT within GitHub's 60 s of clock skew is taken
  assert.equal((await createToken(standIn, jwt({ iss: String(APP_ID), iat: nowSeconds() + 50, exp: nowSeconds() + 600 }))).status, 201);
  // an installation token does not open the App's own operations
  const token = standIn.issuedTokens[0]?.token ?? '';
  assert.equal((await createToken(standIn, token)).status, 401);
  assert.equal(standIn.issuedTokens.length, 1);
  assert.equal(standIn.requests.length, 1);
});

test('app mode: 404 for a repository or installation the App is not installed on', async (t) => {
  const standIn = await startApp(t);
  const app = new Octokit({ baseUrl: standIn.url, log: silent, auth: jwt(goodClaims()) });
  const missing = await requestError(app.rest.apps.getRepoInstallation({ owner, repo: 'not-installed' }));
  assert.equal(missing.status, 404);
  assert.equal((await createToken(standIn, jwt(goodClaims()), 99)).status, 404);
  standIn.install(`${owner}/not-installed`, 56);
  assert.equal((await app.rest.apps.getRepoInstallation({ owner, repo: 'not-installed' })).data.id, 56);
  assert.equal((await createToken(standIn, jwt(goodClaims()), 56)).status, 201);
});

test('app mode: an expired or unknown token gets 401, a token of another installation 403', async (t) => {
  const standIn = await startApp(t, 1);
  standIn.install('someone/else', 66);
  const issued = await createToken(standIn, jwt(goodClaims()));
  const installed = new Octokit({ baseUrl: standIn.url, log: silent, auth: issued.body.token });
  await installed.rest.repos.createCommitStatus({ owner, repo, sha, state: 'pending' });
  const foreign = await requestError(installed.rest.repos.createCommitStatus({ owner: 'someone', repo: 'else', sha, state: 'pending' }));
  assert.equal(foreign.status, 403);
  const unknown = await requestError(octokitFor(standIn, 'ghs_000000000000000000000000000000000000').rest.repos.get({ owner, repo }));
  assert.equal(unknown.status, 401);

  await new Promise((resolve) => setTimeout(resolve, (standIn.issuedTokens[0]?.expiresAt.getTime() ?? 0) - Date.now() + 50));
  const expired = await requestError(installed.rest.repos.createCommitStatus({ owner, repo, sha, state: 'success' }));
  assert.equal(expired.status, 401);
  assert.deepEqual(
    standIn.rejected.map((r) => [r.status, r.errors]),
    [
      [403, ['app mode: Resource not accessible by integration']],
      [401, ['app mode: Bad credentials']],
      [401, ['app mode: Bad credentials']],
    ],
  );
});

test('app mode: requests are still validated against the description', async (t) => {
  const standIn = await startApp(t);
  const issued = await createToken(standIn, jwt(goodClaims()));
  const error = await requestError(octokitFor(standIn, issued.body.token ?? '').request(createStatusRoute, { owner, repo, sha, state: 'bogus' }));
  assert.equal(error.status, 422);
  assert.equal(standIn.rejected[0]?.status, 422);
});

test('install() outside app mode throws GITHUB_STAND_IN_NOT_APP', async (t) => {
  const standIn = await start(t);
  assert.throws(
    () => standIn.install(`${owner}/${repo}`, 1),
    (error: unknown) => error instanceof GitHubStandInError && error.code === 'GITHUB_STAND_IN_NOT_APP',
  );
});
