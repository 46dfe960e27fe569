import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test, type TestContext } from 'node:test';
import { createOctokit } from '../src/github/commit-statuses.js';
import { createWebhookRegistrar, ensureWebhooks, WEBHOOK_EVENTS, type RegistrationReport } from '../src/github/webhook-registration.js';
import { createLogger, type Logger } from '../src/logger.js';
import { startFixtureServer } from './support/fixture-server.js';
import { startGitHubStandIn, type CannedAnswer, type GitHubStandIn, type RecordedRequest } from './support/github-stand-in.js';

const HOOK_URL = 'https://ci.example.test/hooks/github';
const SECRET = 'a webhook secret that must never reach a log';
const DOCS = 'https://docs.github.com/rest/repos/webhooks';

/** A hook as GitHub lists it (https://docs.github.com/rest/repos/webhooks#list-repository-webhooks). */
function listedHook(id: number, overrides: { url?: string; events?: string[]; active?: boolean; content_type?: string; secret?: string } = {}) {
  const config: Record<string, string> = { content_type: overrides.content_type ?? 'json', insecure_ssl: '0', url: overrides.url ?? HOOK_URL };
  if (overrides.secret !== undefined) config['secret'] = overrides.secret;
  const self = `https://api.github.com/repos/acme/widget/hooks/${id}`;
  return {
    type: 'Repository',
    id,
    name: 'web',
    active: overrides.active ?? true,
    events: overrides.events ?? [...WEBHOOK_EVENTS],
    config,
    updated_at: '2024-01-01T00:00:00Z',
    created_at: '2024-01-01T00:00:00Z',
    url: self,
    test_url: `${self}/test`,
    ping_url: `${self}/pings`,
    deliveries_url: `${self}/deliveries`,
    last_response: { code: null, status: 'unused', message: null },
  };
}

const notFound: CannedAnswer = { status: 404, body: { message: 'Not Found', documentation_url: DOCS, status: '404' } };
const forbidden: CannedAnswer = { status: 403, body: { message: 'Resource not accessible by personal access token', documentation_url: DOCS, status: '403' } };

const repositoryOf = (r: RecordedRequest) => `${r.params['owner']}/${r.params['repo']}`;
const writesOf = (github: GitHubStandIn) => github.requests.filter((r) => r.method !== 'GET');

/** Answers `operationId` per repository from `answers`; a repository not in it gets the documented example. */
function perRepository(github: GitHubStandIn, operationId: string, answers: Record<string, CannedAnswer>): void {
  github.answer(operationId, (r) => answers[repositoryOf(r)]);
}

interface Setup {
  github: GitHubStandIn;
  log: Logger;
  register: (repositories: string[]) => Promise<RegistrationReport[]>;
}

/**
 * A stand-in, the server's own Octokit pointed at it, and a debug-level log; after the test,
 * asserts that every request validated against GitHub's description and that the secret is
 * in no log line.
 */
async function setUp(t: TestContext): Promise<Setup> {
  const github = await startGitHubStandIn();
  const lines: string[] = [];
  const log = createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    }),
  });
  t.after(async () => {
    await github.close();
    assert.deepEqual(github.rejected, [], 'every request is valid for GitHub');
    assert.ok(lines.length > 0, 'something was logged');
    assert.ok(!lines.some((line) => line.includes(SECRET)), 'the secret is never logged');
  });
  const octokit = createOctokit({ apiUrl: github.url, token: 'test-token', log });
  return { github, log, register: (repositories) => ensureWebhooks({ octokit, repositories, hookUrl: HOOK_URL, secret: SECRET, log }) };
}

describe('ensureWebhooks', () => {
  test('creates a hook with our URL, secret, events, JSON and TLS verification when the repository has none', async (t) => {
    const { github, register } = await setUp(t);
    github.answer('repos/list-webhooks', () => ({ status: 200, body: [] }));

    const reports = await register(['acme/widget']);

    assert.deepEqual(reports, [{ repository: 'acme/widget', outcome: 'created', hookId: 12345678 }]);
    const [create] = writesOf(github);
    assert.equal(create?.operationId, 'repos/create-webhook');
    assert.equal(create.path, '/repos/acme/widget/hooks');
    assert.deepEqual(create.body, {
      name: 'web',
      active: true,
      events: ['push', 'create', 'delete', 'pull_request'],
      config: { url: HOOK_URL, content_type: 'json', insecure_ssl: '0', secret: SECRET },
    });
    assert.equal(writesOf(github).length, 1);
  });

  test('creates our hook beside hooks with other URLs and leaves those alone', async (t) => {
    const { github, register } = await setUp(t);
    github.answer('repos/list-webhooks', () => ({ status: 200, body: [listedHook(7, { url: 'https://chat.example.test/github', events: ['push'] })] }));

    const reports = await register(['acme/widget']);

    assert.equal(reports[0]?.outcome, 'created');
    assert.deepEqual(
      writesOf(github).map((r) => r.operationId),
      ['repos/create-webhook'],
    );
  });

  test('updates our hook when it has fewer events, sending the whole settings and the secret', async (t) => {
    const { github, register } = await setUp(t);
    github.answer('repos/list-webhooks', () => ({
      status: 200,
      body: [listedHook(41, { url: 'https://chat.example.test/x' }), listedHook(42, { events: ['push'], secret: '********' })],
    }));

    const reports = await register(['acme/widget']);

    assert.deepEqual(reports, [{ repository: 'acme/widget', outcome: 'updated', hookId: 42, changed: ['events'] }]);
    const [update] = writesOf(github);
    assert.equal(update?.operationId, 'repos/update-webhook');
    assert.equal(update.path, '/repos/acme/widget/hooks/42');
    assert.deepEqual(update.body, {
      active: true,
      events: ['push', 'create', 'delete', 'pull_request'],
      config: { url: HOOK_URL, content_type: 'json', insecure_ssl: '0', secret: SECRET },
    });
    assert.equal(writesOf(github).length, 1);
  });

  test('updates our hook when it is inactive, sends form bodies or has no secret, naming each difference', async (t) => {
    const { github, register } = await setUp(t);
    github.answer('repos/list-webhooks', () => ({ status: 200, body: [listedHook(43, { active: false, content_type: 'form' })] }));

    const reports = await register(['acme/widget']);

    assert.deepEqual(reports, [{ repository: 'acme/widget', outcome: 'updated', hookId: 43, changed: ['content_type', 'active', 'secret'] }]);
    assert.deepEqual(
      writesOf(github).map((r) => r.path),
      ['/repos/acme/widget/hooks/43'],
    );
  });

  test('writes nothing when our hook is already right (events in any order, secret set)', async (t) => {
    const { github, register } = await setUp(t);
    // GitHub shows a set secret as asterisks, never its value
    github.answer('repos/list-webhooks', () => ({
      status: 200,
      body: [listedHook(44, { events: ['pull_request', 'delete', 'push', 'create'], secret: '********' })],
    }));

    const reports = await register(['acme/widget']);

    assert.deepEqual(reports, [{ repository: 'acme/widget', outcome: 'unchanged', hookId: 44 }]);
    assert.deepEqual(
      github.requests.map((r) => `${r.method} ${r.path}`),
      ['GET /repos/acme/widget/hooks'],
    );
    assert.equal(github.requests[0]?.query['per_page'], '100');
  });

  test('finds our hook when its URL has a trailing slash, and corrects the URL', async (t) => {
    const { github, register } = await setUp(t);
    github.answer('repos/list-webhooks', () => ({ status: 200, body: [listedHook(45, { url: `${HOOK_URL}/`, secret: '********' })] }));

    const reports = await register(['acme/widget']);

    assert.deepEqual(reports, [{ repository: 'acme/widget', outcome: 'updated', hookId: 45, changed: ['url'] }]);
    assert.deepEqual(
      writesOf(github).map((r) => `${r.method} ${r.path}`),
      ['PATCH /repos/acme/widget/hooks/45'],
    );
  });

  test('reports a 404, a 403 and a bad name as failed with the reason, does the others and throws nothing', async (t) => {
    const { github, register } = await setUp(t);
    github.answer('repos/list-webhooks', (r) => (repositoryOf(r) === 'acme/gone' ? notFound : { status: 200, body: [] }));
    perRepository(github, 'repos/create-webhook', { 'acme/readonly': forbidden });

    const reports = await register(['acme/gone', 'acme/readonly', 'not-a-repository', 'acme/widget', 'acme/widget']);

    assert.deepEqual(
      reports.map((r) => [r.repository, r.outcome, r.outcome === 'failed' ? r.status : null]),
      [
        ['acme/gone', 'failed', 404],
        ['acme/readonly', 'failed', 403],
        ['not-a-repository', 'failed', null],
        ['acme/widget', 'created', null],
      ],
      'one report per distinct repository, in order',
    );
    const reason = (repository: string) => {
      const report = reports.find((r) => r.repository === repository);
      return report?.outcome === 'failed' ? report.reason : '';
    };
    assert.match(reason('acme/gone'), /^listing the webhooks: not found \(404\).*admin:repo_hook.*Webhooks: write.*Not Found/);
    assert.match(reason('acme/readonly'), /^creating the webhook: forbidden \(403\).*admin rights.*Resource not accessible by personal access token/);
    assert.match(reason('not-a-repository'), /owner\/repo/);
    assert.deepEqual(writesOf(github).map(repositoryOf), ['acme/readonly', 'acme/widget']);
  });
});

describe('createWebhookRegistrar', () => {
  test('runs one sync at a time, and of the calls waiting only the latest list runs', async (t) => {
    const { github, log } = await setUp(t);
    github.answer('repos/list-webhooks', () => ({ status: 200, body: [] }));
    const at = new Date('2024-05-06T07:08:09.000Z');
    const registrar = createWebhookRegistrar({
      octokit: createOctokit({ apiUrl: github.url, token: 'test-token', log }),
      hookUrl: HOOK_URL,
      secret: SECRET,
      log,
      now: () => at,
    });
    assert.equal(registrar.last(), null);

    const first = registrar.sync(['acme/one']);
    const second = registrar.sync(['acme/two']);
    const third = registrar.sync(['acme/three']);
    const [a, b, c] = await Promise.all([first, second, third]);

    assert.deepEqual(
      a.map((r) => r.repository),
      ['acme/one'],
    );
    assert.deepEqual(
      b.map((r) => r.repository),
      ['acme/three'],
      'the waiting call got the latest list',
    );
    assert.equal(b, c);
    assert.deepEqual(
      github.requests.map((r) => `${r.operationId} ${repositoryOf(r)}`),
      ['repos/list-webhooks acme/one', 'repos/create-webhook acme/one', 'repos/list-webhooks acme/three', 'repos/create-webhook acme/three'],
    );
    assert.deepEqual(registrar.last(), { at: at.toISOString(), registrations: c });
  });

  test('after close, sync touches no repository and reports each as stopped', async (t) => {
    const { github, log } = await setUp(t);
    const registrar = createWebhookRegistrar({
      octokit: createOctokit({ apiUrl: github.url, token: 'test-token', log }),
      hookUrl: HOOK_URL,
      secret: SECRET,
      log,
    });
    registrar.close();

    const reports = await registrar.sync(['acme/widget']);

    assert.deepEqual(reports, [{ repository: 'acme/widget', outcome: 'failed', status: null, reason: 'stopped before this repository was done' }]);
    assert.deepEqual(github.requests, []);
  });
});

describe('webhook registration in the running server', () => {
  const PUBLIC_URL = 'https://ci.example.test';
  interface WebhooksView {
    enabled: boolean;
    at: string | null;
    registrations: RegistrationReport[];
  }
  const webhooksOf = async (serverUrl: string): Promise<WebhooksView> => (await (await fetch(`${serverUrl}/api/webhooks`)).json()) as WebhooksView;
  async function waitForRun(serverUrl: string): Promise<WebhooksView> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const view = await webhooksOf(serverUrl);
      if (view.at !== null) return view;
      if (Date.now() > deadline) throw new Error('no registration run finished within 30 s');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  test('creates the hook of every repository in the config repository after it starts', async (t) => {
    const github = await startGitHubStandIn();
    t.after(() => github.close());
    const f = await startFixtureServer('webhook-registration', {
      publicUrl: PUBLIC_URL,
      github: { apiUrl: github.url, token: 'test-token', registerWebhooks: true },
    });
    t.after(() => f.close());

    const [create] = await github.waitFor((r) => r.operationId === 'repos/create-webhook');
    const view = await waitForRun(f.server.url);

    assert.equal(create?.path, '/repos/acme/widget/hooks');
    assert.deepEqual(create.body, {
      name: 'web',
      active: true,
      events: ['push', 'create', 'delete', 'pull_request'],
      config: { url: `${PUBLIC_URL}/hooks/github`, content_type: 'json', insecure_ssl: '0', secret: f.secret },
    });
    // test/fixtures/config-repo holds one repository, acme/widget; the example hook GitHub lists points elsewhere
    assert.deepEqual(view, { enabled: true, at: view.at, registrations: [{ repository: 'acme/widget', outcome: 'created', hookId: 12345678 }] });
    assert.deepEqual(
      github.requests.map((r) => `${r.method} ${r.path}`),
      ['GET /repos/acme/widget/hooks', 'POST /repos/acme/widget/hooks'],
    );
    assert.deepEqual(github.rejected, []);
  });

  test('starts and serves while GitHub answers 500, and shows the failure at GET /api/webhooks', async (t) => {
    const github = await startGitHubStandIn();
    t.after(() => github.close());
    github.failWith(500);
    const f = await startFixtureServer('webhook-registration-500', {
      publicUrl: PUBLIC_URL,
      github: { apiUrl: github.url, token: 'test-token', registerWebhooks: true },
    });
    t.after(() => f.close());

    assert.equal((await fetch(`${f.server.url}/healthz`)).status, 200);
    const view = await waitForRun(f.server.url);

    assert.equal(view.registrations.length, 1);
    const [report] = view.registrations;
    assert.ok(report?.outcome === 'failed', `failed, got ${JSON.stringify(report)}`);
    assert.equal(report.repository, 'acme/widget');
    assert.equal(report.status, 500);
    assert.match(report.reason, /^listing the webhooks: GitHub answered 500/);
    assert.equal(github.failedCount, 2, 'tried once, retried once');
    assert.equal((await fetch(`${f.server.url}/healthz`)).status, 200);
  });

  test('registers nothing without a publicUrl, and says so at GET /api/webhooks', async (t) => {
    const github = await startGitHubStandIn();
    t.after(() => github.close());
    const f = await startFixtureServer('webhook-registration-no-url', { github: { apiUrl: github.url, token: 'test-token', registerWebhooks: true } });
    t.after(() => f.close());

    assert.deepEqual(await webhooksOf(f.server.url), { enabled: false, at: null, registrations: [] });
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(
      github.requests.filter((r) => r.path.includes('/hooks')),
      [],
    );
  });
});
