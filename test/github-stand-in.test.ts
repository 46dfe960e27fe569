import assert from 'node:assert/strict';
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
