import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig, type ConfigInput } from '../src/config/index.js';
import type { BuildView } from '../src/http/build-view.js';
import { createLogger } from '../src/logger.js';
import { startServer, type RunningServer } from '../src/server.js';
import { makeTestDir } from './support/data-dir.js';
import { startFixtureServer, TEST_IMAGE, type FixtureServer } from './support/fixture-server.js';
import { createGitRepository, type GitRepository } from './support/git-repository.js';
import { startGitHubStandIn, type GitHubStandIn, type RecordedRequest } from './support/github-stand-in.js';
import { startRedisServer, type RunningRedis } from './support/redis-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';
import { startTestWorker } from './support/worker-process.js';
import type { RunningWorker } from '../src/worker/start-worker.js';

const FIXTURES = resolve(import.meta.dirname, 'fixtures');
const APP_ID = 4242;
const CLONE_URL = 'https://github.com/acme/cwarn.git';
const SECRET = 'it is a secret to everybody';

type Annotation = { path: string; start_line: number; end_line: number; start_column?: number; annotation_level: string; message: string };
type CheckBody = {
  name?: string;
  head_sha?: string;
  external_id?: string;
  details_url?: string;
  status?: string;
  conclusion?: string;
  started_at?: string;
  completed_at?: string;
  output?: { title: string; summary: string; text?: string; annotations?: Annotation[] };
  actions?: { identifier: string }[];
};
const bodyOf = (r: RecordedRequest) => r.body as CheckBody;
/** when the stand-in took each check run update (ms since the epoch) */
const arrivals = new WeakMap<RecordedRequest, number>();

/** A server in GitHub App mode over the C project `acme/cwarn` and a git config repository `acme/config`. */
interface AppFixture {
  server: RunningServer;
  github: GitHubStandIn;
  repo: GitRepository & { head: string | null };
  config: GitRepository & { head: string | null };
  dir: string;
  push(repository: 'cwarn' | 'config', ref: string, sha: string): Promise<void>;
  waitForBuild(match: (b: BuildView) => boolean, timeoutMs?: number): Promise<BuildView>;
  /** Stops the server (its data stays). */
  stop(): Promise<void>;
  /** Starts a server again on the same data directory, with `github` settings over the first ones. */
  start(github?: ConfigInput['github']): Promise<void>;
  close(): Promise<void>;
}

/** `more` is merged over the fixture's settings (dispatch, …). */
async function startAppFixture(name: string, more: ConfigInput = {}): Promise<AppFixture> {
  const dir = await makeTestDir(name);
  const key = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const github = await startGitHubStandIn({
    app: { appId: APP_ID, publicKeyPem: key.publicKey, installations: { 'acme/cwarn': 77, 'acme/config': 77 } },
  });
  // GitHub gives every check run an id of its own (the documented example always says 4)
  let nextId = 5000;
  github.answer('checks/create', (r) => ({ status: 201, body: { id: nextId++, name: bodyOf(r).name, head_sha: bodyOf(r).head_sha } }));
  github.answer('checks/update', (r) => {
    arrivals.set(r, Date.now());
    return undefined;
  });
  const repo = await createGitRepository(join(dir, 'cwarn'), join(FIXTURES, 'projects', 'cwarn'));
  const config = await createGitRepository(join(dir, 'config'), join(FIXTURES, 'checks-config-repo'));
  const input: ConfigInput = {
    dataDir: join(dir, 'data'),
    listen: { host: '127.0.0.1', port: 0 },
    configRepository: { url: config.url, repository: 'acme/config', pollSeconds: 0 },
    github: { apiUrl: github.url, app: { appId: APP_ID, privateKey: key.privateKey } },
    docker: { defaultImage: TEST_IMAGE, network: 'none' },
    cloneUrlRewrites: [{ from: CLONE_URL, to: repo.url }],
    logLevel: 'silent',
    ...more,
  };
  const run = (overrides: ConfigInput['github'] = {}) =>
    startServer(loadConfig({ ...input, github: { ...input.github, ...overrides } }, {}), { log: createLogger({ level: 'silent' }), webhookSecret: SECRET });
  const fixture: AppFixture = {
    server: await run(),
    github,
    repo,
    config,
    dir,
    async push(repository, ref, sha) {
      const cloneUrl = repository === 'cwarn' ? CLONE_URL : 'https://github.com/acme/config.git';
      const answer = await deliver(fixture.server.url, {
        event: 'push',
        secret: SECRET,
        payload: pushPayload({ owner: 'acme', repo: repository, ref, sha, cloneUrl }),
      });
      assert.equal(answer.status, 202, JSON.stringify(answer.body));
    },
    async waitForBuild(match, timeoutMs = 90_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const response = await fetch(`${fixture.server.url}/api/builds?repo=acme/cwarn&limit=500`);
        const found = ((await response.json()) as { builds: BuildView[] }).builds.find(match);
        if (found !== undefined && !['queued', 'running'].includes(found.state)) return found;
        if (Date.now() > deadline) throw new Error(`no finished build matched within ${timeoutMs} ms; last seen: ${JSON.stringify(found ?? null)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    stop: () => fixture.server.close(),
    async start(overrides) {
      fixture.server = await run(overrides);
    },
    async close() {
      await fixture.server.close();
      await github.close();
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    },
  };
  return fixture;
}

/** The creates and updates of the check runs whose create carried `externalId`, in order, with the id each got. */
function checkRunsOf(github: GitHubStandIn, externalId: string): { id: number; requests: RecordedRequest[] }[] {
  const ids = new Map<number, RecordedRequest[]>();
  // the stand-in answers creates with ids in order from 5000: the nth create got 5000 + n
  github.requests
    .filter((r) => r.operationId === 'checks/create')
    .forEach((r, n) => {
      if (bodyOf(r).external_id === externalId) ids.set(5000 + n, [r]);
    });
  for (const r of github.requests) {
    if (r.operationId !== 'checks/update') continue;
    ids.get(Number(r.params['check_run_id']))?.push(r);
  }
  return [...ids].map(([id, requests]) => ({ id, requests }));
}

/** Resolves with the requests of the one check run of `externalId` once it has been completed. */
async function completedCheckRun(github: GitHubStandIn, externalId: string, timeoutMs = 30_000): Promise<{ id: number; requests: RecordedRequest[] }> {
  await github.waitFor(
    () => checkRunsOf(github, externalId).some((run) => run.requests.some((r) => bodyOf(r).status === 'completed' || bodyOf(r).conclusion !== undefined)),
    1,
    timeoutMs,
  );
  const runs = checkRunsOf(github, externalId);
  assert.equal(runs.length, 1, `one check run for ${externalId}`);
  return runs[0] as { id: number; requests: RecordedRequest[] };
}

describe('check runs in GitHub App mode (reporting defaults to checks)', () => {
  let f: AppFixture;
  let first: BuildView;

  before(async () => {
    f = await startAppFixture('check-runs');
  });
  after(async () => {
    await f.close();
  });

  test('a push gives one check run: queued → in_progress → completed, with summary, log tail and annotations of gcc’s warnings', async () => {
    const sha = f.repo.head as string;
    await f.push('cwarn', 'refs/heads/main', sha);
    first = await f.waitForBuild((b) => b.sha === sha && b.context === 'autobuilder/gcc');
    assert.equal(first.state, 'success', first.description ?? '');
    const { requests } = await completedCheckRun(f.github, first.id);
    assert.deepEqual(f.github.rejected, [], 'every request valid by GitHub’s OpenAPI description');

    const [create, ...updates] = requests;
    assert.equal(create?.operationId, 'checks/create');
    assert.deepEqual(create.params, { owner: 'acme', repo: 'cwarn' });
    assert.equal(create.credential.kind, 'installation', 'sent with the installation token');
    const created = bodyOf(create);
    assert.equal(created.name, 'autobuilder/gcc');
    assert.equal(created.head_sha, sha);
    assert.equal(created.external_id, first.id);
    assert.equal(created.details_url, `${f.server.publicUrl}/builds/${first.id}`);
    assert.equal(created.status, 'queued');
    assert.deepEqual(
      created.actions?.map((a) => a.identifier),
      ['rebuild-no-cache'],
    );
    const statuses = updates.map((u) => bodyOf(u).status);
    assert.equal(statuses[0], 'in_progress', statuses.join());
    assert.equal(bodyOf(updates[0] as RecordedRequest).started_at, first.startedAt);
    const completed = updates.at(-1) as RecordedRequest;
    const done = bodyOf(completed);
    assert.equal(done.status, 'completed');
    assert.equal(done.conclusion, 'success');
    assert.equal(done.completed_at, first.finishedAt);
    const output = done.output;
    assert.ok(output !== undefined);
    assert.match(output.title, /^Success: Built in [\d.]+ s$/);
    const [artifact] = first.artifacts;
    assert.ok(artifact !== undefined);
    assert.ok(output.summary.includes(`sha256 \`${artifact.digest}\`: [download](${artifact.url})`), output.summary);
    assert.match(output.summary, /\*\*Duration:\*\* [\d.]+ s/);
    assert.match(output.summary, /\*\*Cache:\*\* miss: no earlier build of this definition/);
    assert.match(output.summary, /\*\*Worker:\*\* the autobuilder server/);
    assert.match(output.summary, /\*\*Annotations:\*\* 2 from the build log/);
    assert.match(output.text ?? '', /hello from a check run/, 'the log tail');
    assert.deepEqual(
      (output.annotations ?? []).map((a) => [a.path, a.start_line, a.end_line, a.start_column, a.annotation_level]),
      [
        ['main.c', 3, 3, 9, 'warning'],
        ['lib/extra.c', 2, 2, 9, 'warning'],
      ],
    );
    assert.match(output.annotations?.[0]?.message ?? '', /unused variable .x./);
    // reporting is checks: no commit status for the commit
    assert.deepEqual(
      f.github.requests.filter((r) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === sha),
      [],
    );
  });

  test('a cache hit creates its check run completed at once: one request', async () => {
    assert.ok(first, 'needs the first build');
    const sha = await f.repo.commitEmpty('the same tree again');
    await f.push('cwarn', 'refs/heads/main', sha);
    const hit = await f.waitForBuild((b) => b.sha === sha && b.context === 'autobuilder/gcc');
    assert.equal(hit.cached, true, hit.description ?? '');
    const { requests } = await completedCheckRun(f.github, hit.id);
    assert.equal(requests.length, 1);
    const body = bodyOf(requests[0] as RecordedRequest);
    assert.equal(requests[0]?.operationId, 'checks/create');
    assert.equal(body.status, 'completed');
    assert.equal(body.conclusion, 'success');
    assert.ok(body.output?.summary.includes(`hit: the same inputs as build [\`${first.id}\`]`), body.output?.summary);
  });

  test('a chatty build’s check run is updated at most once per 5 s while it runs; the end is sent at once', async () => {
    const sha = f.repo.head as string;
    await f.push('cwarn', 'refs/heads/chatty/one', sha);
    const build = await f.waitForBuild((b) => b.sha === sha && b.context === 'autobuilder/chatty');
    assert.equal(build.state, 'success', build.description ?? '');
    const { requests } = await completedCheckRun(f.github, build.id);
    const updates = requests.filter((r) => r.operationId === 'checks/update');
    const refreshes = updates.filter((u) => bodyOf(u).status === 'in_progress').slice(1);
    assert.ok(refreshes.length >= 1, 'the running check run shows the log as it grows');
    assert.match(bodyOf(refreshes[0] as RecordedRequest).output?.text ?? '', /chatty line \d+/);
    const runMs = Date.parse(build.finishedAt ?? '') - Date.parse(build.startedAt ?? '');
    // one status change to in_progress, then at most one refresh per 5 s of the run, then the end
    assert.ok(updates.length <= 2 + Math.ceil(runMs / 5000), `${updates.length} updates in ${runMs} ms`);
    const times = updates.map((u) => arrivals.get(u) ?? Number.NaN);
    for (let i = 1; i < times.length - 1; i++) {
      const gap = (times[i] ?? 0) - (times[i - 1] ?? 0);
      if (i === 1) continue; // in_progress goes at once after the create; the first refresh waits 5 s after it
      assert.ok(gap >= 4900, `updates ${i - 1} and ${i} are ${gap} ms apart`);
    }
  });

  test('a check run left to update when the server stops is completed by the next process, on the same check run', async () => {
    const sha = f.repo.head as string;
    await f.push('cwarn', 'refs/heads/slow/one', sha);
    const slow = await runningBuild(f, 'autobuilder/slow');
    await f.github.waitFor(() => checkRunsOf(f.github, slow.id).some((run) => run.requests.some((r) => bodyOf(r).status === 'in_progress')), 1, 30_000);
    const running = checkRunsOf(f.github, slow.id);
    assert.equal(running.length, 1);
    const { id } = running[0] as { id: number };
    // GitHub is down when the build ends: the completed update waits in the outbox
    f.github.failWith(503);
    const build = await f.waitForBuild((b) => b.sha === sha && b.context === 'autobuilder/slow');
    assert.equal(build.state, 'success');
    const failedBefore = f.github.failedCount;
    const deadline = Date.now() + 10_000;
    while (f.github.failedCount === failedBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(f.github.failedCount > failedBefore, 'the completed update was tried');
    await f.stop();
    f.github.failWith(null);
    await f.start();
    const { requests } = await completedCheckRun(f.github, build.id);
    const end = requests.at(-1) as RecordedRequest;
    assert.equal(Number(end.params['check_run_id']), id, 'the same check run, by the id kept in the outbox');
    assert.equal(bodyOf(end).conclusion, 'success');
    assert.equal(requests.filter((r) => r.operationId === 'checks/create').length, 1);
  });

  test('a build stopped by its timeout ends its check run timed_out', async () => {
    const sha = f.repo.head as string;
    await f.push('cwarn', 'refs/heads/timeout/one', sha);
    const build = await f.waitForBuild((b) => b.sha === sha && b.context === 'autobuilder/timeout');
    assert.equal(build.state, 'error');
    const { requests } = await completedCheckRun(f.github, build.id);
    const end = bodyOf(requests.at(-1) as RecordedRequest);
    assert.equal(end.conclusion, 'timed_out');
    const output = end.output;
    assert.ok(output !== undefined);
    assert.equal(output.title, 'Error: timed out after 2 s');
    assert.match(output.text ?? '', /slow build starts/);
  });

  test('a refused config revision gets a failing autobuilder/config check run with an annotation at each problem; an activated one a success', async () => {
    const active = f.config.head as string;
    const success = f.github.requests.find((r) => r.operationId === 'checks/create' && bodyOf(r).head_sha === active);
    assert.ok(success, 'the revision active at start has its check run');
    assert.deepEqual(success.params, { owner: 'acme', repo: 'config' });
    assert.equal(bodyOf(success).name, 'autobuilder/config');
    assert.equal(bodyOf(success).conclusion, 'success');

    const gcc = (await readFile(join(f.config.dir, 'acme/cwarn/gcc.yaml'), 'utf8')).replace('incremental: false', 'incremental: maybe');
    const chatty = `${await readFile(join(f.config.dir, 'acme/cwarn/chatty.yaml'), 'utf8')}  incremental: sometimes\n`;
    const lineOf = (text: string, needle: string) => text.split('\n').findIndex((l) => l.includes(needle)) + 1;
    const bad = await f.config.commit({ 'acme/cwarn/gcc.yaml': gcc, 'acme/cwarn/chatty.yaml': chatty }, 'break two definitions');
    await f.push('config', 'refs/heads/main', bad);
    const [check] = await f.github.waitFor((r) => r.operationId === 'checks/create' && bodyOf(r).head_sha === bad, 1, 30_000);
    const body = bodyOf(check as RecordedRequest);
    assert.equal(body.name, 'autobuilder/config');
    assert.equal(body.status, 'completed');
    assert.equal(body.conclusion, 'failure');
    const output = body.output;
    assert.ok(output !== undefined);
    assert.equal(output.title, 'Refused: 2 problems');
    const annotations = (output.annotations ?? []).map((a) => [a.path, a.start_line, a.annotation_level]);
    assert.deepEqual(
      annotations.sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
      [
        ['acme/cwarn/chatty.yaml', lineOf(chatty, 'incremental: sometimes'), 'failure'],
        ['acme/cwarn/gcc.yaml', lineOf(gcc, 'incremental: maybe'), 'failure'],
      ],
    );
    assert.match(output.annotations?.[0]?.message ?? '', /incremental: Invalid input: expected boolean/);
    assert.deepEqual(f.github.rejected, []);
    const fixed = await f.config.commit({ 'acme/cwarn/gcc.yaml': gcc.replace('incremental: maybe', 'incremental: false') }, 'fix gcc.yaml only');
    await f.push('config', 'refs/heads/main', fixed);
    const [still] = await f.github.waitFor((r) => r.operationId === 'checks/create' && bodyOf(r).head_sha === fixed, 1, 30_000);
    assert.equal(bodyOf(still as RecordedRequest).output?.title, 'Refused: 1 problem');
    const good = await f.config.commit({ 'acme/cwarn/chatty.yaml': chatty.replace('  incremental: sometimes\n', '') }, 'fix chatty.yaml');
    await f.push('config', 'refs/heads/main', good);
    const [activated] = await f.github.waitFor((r) => r.operationId === 'checks/create' && bodyOf(r).head_sha === good, 1, 30_000);
    assert.equal(bodyOf(activated as RecordedRequest).conclusion, 'success');
    assert.equal(bodyOf(activated as RecordedRequest).output?.title, 'Active: 4 definition files');
    assert.deepEqual(bodyOf(activated as RecordedRequest).output?.annotations, undefined);
  });

  test('reporting both: a build gets its commit statuses and its check run', async () => {
    await f.stop();
    await f.start({ reporting: 'both' });
    const sha = await f.repo.commit({ 'README.md': 'both\n' }, 'reported both ways');
    await f.push('cwarn', 'refs/heads/gcc/both', sha);
    const build = await f.waitForBuild((b) => b.sha === sha && b.context === 'autobuilder/gcc');
    const statuses = await f.github.waitFor((r) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === sha, 2, 30_000);
    assert.deepEqual(
      statuses.map((s) => (s.body as { state: string }).state),
      ['pending', 'success'],
    );
    const { requests } = await completedCheckRun(f.github, build.id);
    assert.equal(bodyOf(requests.at(-1) as RecordedRequest).conclusion, 'success');
  });
});

describe('check runs of builds on a build worker', () => {
  const token = 'check-runs-worker-token-0123456789';
  let redis: RunningRedis;
  let f: AppFixture;
  let worker: RunningWorker | undefined;

  before(async () => {
    redis = await startRedisServer({ password: 'redis-test-password' });
    f = await startAppFixture('check-runs-worker', { dispatch: { mode: 'bullmq', redis: { url: redis.url }, workers: { w1: { token } } } });
    worker = await startTestWorker({ id: 'w1', token, serverUrl: f.server.url, redisUrl: redis.url, dir: f.dir });
  });
  after(async () => {
    await worker?.close().catch(() => undefined);
    await f.close();
    await redis.stop();
  });

  test('the log lines a worker sends become the annotations of the build’s check run', async () => {
    const sha = f.repo.head as string;
    await f.push('cwarn', 'refs/heads/gcc/worker', sha);
    const build = await f.waitForBuild((b) => b.sha === sha && b.context === 'autobuilder/gcc');
    assert.equal(build.state, 'success', build.description ?? '');
    assert.equal(build.worker, 'w1');
    const { requests } = await completedCheckRun(f.github, build.id);
    const output = bodyOf(requests.at(-1) as RecordedRequest).output;
    assert.ok(output !== undefined);
    assert.deepEqual(
      (output.annotations ?? []).map((a) => [a.path, a.start_line, a.annotation_level]),
      [
        ['main.c', 3, 'warning'],
        ['lib/extra.c', 2, 'warning'],
      ],
    );
    assert.match(output.summary, /\*\*Worker:\*\* `w1`/);
    assert.match(output.text ?? '', /hello from a check run/);
  });
});

describe('check runs in token mode', () => {
  let f: FixtureServer;
  before(async () => {
    f = await startFixtureServer('check-runs-token');
  });
  after(async () => {
    await f.close();
    await rm(f.dir, { recursive: true, force: true }).catch(() => undefined);
  });

  test('reporting is statuses: a build posts its commit statuses and makes no check run', async () => {
    const sha = await f.repo.commit({ 'message.txt': 'token mode\n' }, 'token mode');
    const answer = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl: f.cloneUrl }),
    });
    assert.equal(answer.status, 202);
    const build = await f.waitForBuild((b) => b.sha === sha);
    assert.equal(build.state, 'success');
    await f.github.waitFor(
      (r) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === sha && (r.body as { state: string }).state === 'success',
    );
    assert.deepEqual(
      f.github.requests.filter((r) => r.operationId.startsWith('checks/')),
      [],
    );
  });
});

/** The build of `context` once it runs. */
async function runningBuild(f: AppFixture, context: string): Promise<BuildView> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const response = await fetch(`${f.server.url}/api/builds?repo=acme/cwarn&state=running&limit=10`);
    const build = ((await response.json()) as { builds: BuildView[] }).builds.find((b) => b.context === context);
    if (build !== undefined) return build;
    assert.ok(Date.now() < deadline, `no build of ${context} ran within 30 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
