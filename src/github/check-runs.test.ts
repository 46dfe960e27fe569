import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { buildRecord } from '../../test/support/build-record.js';
import { startGitHubStandIn, type GitHubStandIn, type RecordedRequest } from '../../test/support/github-stand-in.js';
import type { Build } from '../builds/build.js';
import { createBuildLogs, type BuildLogs } from '../builds/build-log.js';
import { createLogger } from '../logger.js';
import { createSqliteCheckRunOutbox } from '../store/sqlite-check-run-outbox.js';
import type { CheckRunOutbox } from '../store/check-run-outbox.js';
import { REBUILD_ACTION } from './check-run-output.js';
import { createCheckRunPublisher, type CheckRunPublisher } from './check-runs.js';
import { createTokenAuth } from './github-auth.js';

const log = createLogger({ level: (process.env['TEST_LOG'] as 'debug' | undefined) ?? 'silent' });
const SHA = '0123456789abcdef0123456789abcdef01234567';

type CheckBody = {
  name?: string;
  head_sha?: string;
  external_id?: string;
  details_url?: string;
  status?: string;
  conclusion?: string;
  started_at?: string;
  completed_at?: string;
  output?: { title: string; summary: string; text?: string; annotations?: { path: string; start_line: number; annotation_level: string; message: string }[] };
  actions?: unknown[];
};
const bodyOf = (r: RecordedRequest) => r.body as CheckBody;

describe('createCheckRunPublisher', () => {
  let github: GitHubStandIn;
  let dir: string;
  let logs: BuildLogs;
  let nextId = 1000;
  const open: { publisher: CheckRunPublisher; outbox: CheckRunOutbox }[] = [];

  before(async () => {
    github = await startGitHubStandIn();
    dir = await mkdtemp(join(tmpdir(), 'autobuilder-check-runs-'));
    logs = await createBuildLogs({ dir: join(dir, 'logs') });
  });
  after(async () => {
    await github.close();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    // distinct ids, as GitHub gives (the documented example always says 4); when each update came
    github.answer('checks/create', (r) => {
      const id = nextId++;
      createdIds.set(r, id);
      return { status: 201, body: { id, head_sha: bodyOf(r).head_sha, name: bodyOf(r).name } };
    });
    github.answer('checks/update', (r) => {
      receivedAt.set(r, Date.now());
      return undefined;
    });
  });
  afterEach(async () => {
    for (const { publisher } of open.splice(0)) {
      await publisher.flush();
      publisher.close();
    }
    github.failWith(null);
  });

  const start = (options: { outbox?: CheckRunOutbox; intervalMs?: number; maxAnnotations?: number; fetch?: typeof globalThis.fetch } = {}) => {
    const outbox = options.outbox ?? createSqliteCheckRunOutbox({ path: ':memory:' });
    const publisher = createCheckRunPublisher({
      auth: createTokenAuth({ apiUrl: github.url, token: 'test-token', log, fetch: options.fetch }),
      outbox,
      logs,
      publicUrl: 'http://ci.test/',
      log,
      intervalMs: options.intervalMs ?? 200,
      ...(options.maxAnnotations === undefined ? {} : { maxAnnotations: options.maxAnnotations }),
    });
    open.push({ publisher, outbox });
    return { publisher, outbox };
  };
  let serial = 0;
  const newBuild = (changes: Partial<Build> = {}): Build => {
    serial += 1;
    return buildRecord({ id: `mfx1k2p3-0000000${serial}`, sha: SHA, state: 'queued', description: 'Queued', context: 'autobuilder/hello', ...changes });
  };
  /** the ids the creates of `build` were answered with */
  const idsOf = (build: Build) =>
    github.requests.filter((r) => r.operationId === 'checks/create' && bodyOf(r).external_id === build.id).map((r) => createdIds.get(r) ?? -1);
  /** the creates and updates of the check runs of `build`, in order */
  const checksOf = (build: Build) => {
    const ids = idsOf(build);
    return github.requests.filter(
      (r) =>
        (r.operationId === 'checks/create' && bodyOf(r).external_id === build.id) ||
        (r.operationId === 'checks/update' && ids.includes(Number(r.params['check_run_id']))),
    );
  };
  const finished = (build: Build, changes: Partial<Build>): Build => ({ ...build, finishedAt: new Date().toISOString(), ...changes });

  test('a build goes queued → in_progress → completed on one check run, with its summary, log tail and annotations', async () => {
    // a change of status is not held back by coalescing, however long the interval
    const { publisher } = start({ intervalMs: 60_000 });
    const queued = newBuild();
    const buildLog = logs.open(queued.id);
    await publisher.publish(queued);
    const running = { ...queued, state: 'running' as const, description: 'Running', startedAt: new Date().toISOString() };
    publisher.progress(running);
    buildLog.line('cc main.c');
    buildLog.line("/workspace/src/main.c:3:5: warning: unused variable 'x' [-Wunused-variable]");
    buildLog.line('/usr/include/stdio.h:1:1: error: outside the repository');
    await github.waitFor((r) => r.operationId === 'checks/update' && bodyOf(r).status === 'in_progress', 1, 5000);
    const done = finished(running, { state: 'failure', exitCode: 2, description: 'build.sh exited with code 2 after 0.4 s' });
    buildLog.line('[autobuilder] failure');
    buildLog.close();
    await publisher.publish(done);
    await publisher.flush();

    const requests = checksOf(queued);
    assert.deepEqual(github.rejected, []);
    const [create, ...updates] = requests;
    assert.equal(create?.operationId, 'checks/create');
    const created = bodyOf(create);
    assert.equal(created.name, 'autobuilder/hello');
    assert.equal(created.head_sha, SHA);
    assert.equal(created.external_id, queued.id);
    assert.equal(created.details_url, `http://ci.test/builds/${queued.id}`);
    assert.equal(created.status, 'queued');
    assert.deepEqual(created.actions, [REBUILD_ACTION]);
    const id = idsOf(queued)[0];
    assert.equal(idsOf(queued).length, 1, 'one check run');
    assert.ok(updates.length >= 1);
    for (const u of updates) assert.equal(Number(u.params['check_run_id']), id);
    const statuses = updates.map((u) => bodyOf(u).status);
    assert.ok(statuses.includes('in_progress'), statuses.join());
    const last = bodyOf(updates.at(-1) as RecordedRequest);
    assert.equal(last.status, 'completed');
    assert.equal(last.conclusion, 'failure');
    assert.equal(last.completed_at, done.finishedAt);
    const output = last.output;
    assert.ok(output !== undefined);
    assert.equal(output.title, 'Failure: build.sh exited with code 2 after 0.4 s');
    assert.match(output.summary, /\*\*Failure\*\*/);
    assert.match(output.text ?? '', /unused variable 'x'/);
    assert.match(output.text ?? '', /\[autobuilder\] failure/, 'the lines written last are in the tail');
    assert.deepEqual(
      output.annotations?.map((a) => [a.path, a.start_line, a.annotation_level]),
      [['src/main.c', 3, 'warning']],
    );
    const inProgress = updates.find((u) => bodyOf(u).status === 'in_progress');
    assert.equal(bodyOf(inProgress as RecordedRequest).started_at, running.startedAt);
  });

  test('a cache hit creates its check run completed at once: one request', async () => {
    const { publisher } = start();
    const hit = newBuild({
      state: 'success',
      cached: true,
      sourceBuildId: 'mfx0-src',
      description: 'Cached: same inputs as build mfx0-src',
      finishedAt: new Date().toISOString(),
    });
    await publisher.publish(hit);
    await publisher.flush();
    const requests = checksOf(hit);
    assert.equal(requests.length, 1);
    assert.equal(requests[0]?.operationId, 'checks/create');
    assert.equal(bodyOf(requests[0]).status, 'completed');
    assert.equal(bodyOf(requests[0]).conclusion, 'success');
    assert.match(bodyOf(requests[0]).output?.summary ?? '', /hit: the same inputs as build/);
  });

  test('while running, updates are coalesced to one per interval; the completed one is sent at once', async () => {
    const intervalMs = 600;
    const { publisher } = start({ intervalMs });
    const queued = newBuild();
    const buildLog = logs.open(queued.id);
    await publisher.publish(queued);
    await publisher.flush();
    const running = { ...queued, state: 'running' as const, description: 'Running', startedAt: new Date().toISOString() };
    publisher.progress(running);
    const started = Date.now();
    // a chatty build: a line every 10 ms and a description change every 50 ms for 2.5 s
    for (let i = 0; Date.now() - started < 2500; i++) {
      buildLog.line(`chatty line ${i}`);
      if (i % 5 === 0) publisher.progress({ ...running, description: `Running (${i})` });
      await new Promise((r) => setTimeout(r, 10));
    }
    buildLog.close();
    const endAt = Date.now();
    await publisher.publish(finished(running, { state: 'success', description: 'Built in 2.5 s' }));
    await publisher.flush();
    const updates = checksOf(queued).filter((r) => r.operationId === 'checks/update');
    const times = updates.map((u) => receivedAt.get(u) ?? 0);
    assert.ok(updates.length >= 3, `${updates.length} updates`);
    assert.ok(updates.length <= Math.ceil(2500 / intervalMs) + 2, `${updates.length} updates for ${Math.ceil(2500 / intervalMs)} intervals`);
    for (let i = 1; i < updates.length - 1; i++) {
      const gap = (times[i] ?? 0) - (times[i - 1] ?? 0);
      assert.ok(gap >= intervalMs - 50, `updates ${i - 1} and ${i} are ${gap} ms apart`);
    }
    const last = updates.at(-1) as RecordedRequest;
    assert.equal(bodyOf(last).status, 'completed');
    assert.ok((receivedAt.get(last) ?? 0) - endAt < 500, 'the completed update is not held back by the interval');
    assert.match(bodyOf(updates[1] as RecordedRequest).output?.text ?? '', /chatty line \d+/, 'a running update carries the log tail');
  });

  test('an update never overtakes the create: it waits for the id the create returns', async () => {
    let releaseCreate = () => undefined as void;
    const createHeld = new Promise<void>((resolve) => (releaseCreate = resolve));
    const slowCreates: typeof globalThis.fetch = async (input, init) => {
      if (init?.method === 'POST' && String(input instanceof Request ? input.url : input).endsWith('/check-runs')) await createHeld;
      return globalThis.fetch(input, init);
    };
    const { publisher } = start({ fetch: slowCreates });
    const queued = newBuild();
    await publisher.publish(queued);
    await new Promise((r) => setTimeout(r, 100));
    await publisher.publish(finished(queued, { state: 'cancelled', description: 'Superseded by build x' }));
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(checksOf(queued), [], 'nothing is sent while the create is held');
    releaseCreate();
    await publisher.flush();
    const requests = checksOf(queued);
    assert.deepEqual(
      requests.map((r) => r.operationId),
      ['checks/create', 'checks/update'],
    );
    assert.equal(Number(requests[1]?.params['check_run_id']), idsOf(queued)[0]);
    assert.equal(bodyOf(requests[1] as RecordedRequest).conclusion, 'cancelled');
  });

  test('a change of the build that comes after its end never takes the completed check run back', async () => {
    const { publisher } = start({ intervalMs: 50 });
    const queued = newBuild();
    const buildLog = logs.open(queued.id);
    await publisher.publish(queued);
    const running = { ...queued, state: 'running' as const, description: 'Running', startedAt: new Date().toISOString() };
    publisher.progress(running);
    buildLog.line('a line while it runs');
    await github.waitFor((r) => r.operationId === 'checks/update' && bodyOf(r).status === 'in_progress', 1, 5000);
    // the end waits for the log to close; meanwhile a late change and more lines arrive
    const ended = publisher.publish(finished(running, { state: 'success', description: 'Built' }));
    publisher.progress({ ...running, description: 'Running, still' });
    buildLog.line('the last line');
    await new Promise((r) => setTimeout(r, 200));
    buildLog.close();
    await ended;
    await publisher.flush();
    await new Promise((r) => setTimeout(r, 200));
    await publisher.flush();
    const statuses = checksOf(queued).map((r) => bodyOf(r).status ?? '(annotations)');
    assert.equal(statuses.at(-1), 'completed', statuses.join());
    assert.equal(statuses.indexOf('completed'), statuses.length - 1, statuses.join());
    assert.match(bodyOf(checksOf(queued).at(-1) as RecordedRequest).output?.text ?? '', /the last line/);
  });

  test('annotations past 50 go in further updates of 50; past the cap they are counted in the summary', async () => {
    const { publisher } = start({ maxAnnotations: 120 });
    const queued = newBuild();
    const buildLog = logs.open(queued.id);
    await publisher.publish(queued);
    for (let i = 1; i <= 130; i++) buildLog.line(`lib/file${i}.c:${i}:1: warning: number ${i}`);
    buildLog.close();
    await publisher.publish(finished(queued, { state: 'failure', description: 'exited with code 1' }));
    await publisher.flush();
    const sent = checksOf(queued).map((r) => bodyOf(r).output?.annotations?.length ?? 0);
    assert.deepEqual(
      sent.filter((n) => n > 0),
      [50, 50, 20],
    );
    const all = checksOf(queued).flatMap((r) => bodyOf(r).output?.annotations ?? []);
    assert.deepEqual(
      all.map((a) => a.start_line),
      Array.from({ length: 120 }, (_, i) => i + 1),
    );
    const completed = checksOf(queued).find((r) => bodyOf(r).status === 'completed');
    assert.match(bodyOf(completed as RecordedRequest).output?.summary ?? '', /120 from the build log; 10 more found, beyond the cap, not shown/);
  });

  test('a failing GitHub is tried again later; a new publisher on the same outbox file PATCHes the same check run', async () => {
    const path = join(dir, 'outbox.db');
    const first = start({ outbox: createSqliteCheckRunOutbox({ path }) });
    const queued = newBuild();
    await first.publisher.publish(queued);
    await first.publisher.flush();
    const [id] = idsOf(queued);
    assert.equal(typeof id, 'number');
    github.failWith(502);
    const running = { ...queued, state: 'running' as const, description: 'Running', startedAt: new Date().toISOString() };
    first.publisher.progress(running);
    await new Promise((r) => setTimeout(r, 300));
    await first.publisher.flush();
    assert.ok(github.failedCount > 0, 'the update was tried');
    first.publisher.close();
    open.splice(open.indexOf(first), 1);
    github.failWith(null);

    const second = start({ outbox: createSqliteCheckRunOutbox({ path }) });
    const pending = second.outbox.get(queued.id);
    assert.equal(pending?.checkRunId, id, 'the GitHub id survived the restart');
    await github.waitFor((r) => r.operationId === 'checks/update' && Number(r.params['check_run_id']) === id && bodyOf(r).status === 'in_progress', 1, 5000);
    await second.publisher.publish(finished(running, { state: 'success', description: 'Built' }));
    await second.publisher.flush();
    const requests = checksOf(queued);
    assert.equal(requests.filter((r) => r.operationId === 'checks/create').length, 1, 'never created twice');
    assert.equal(bodyOf(requests.at(-1) as RecordedRequest).conclusion, 'success');
    assert.equal(second.outbox.size(), 0, 'a completed check run leaves the outbox');
  });

  test('a create GitHub refuses is given up and logged, and holds nothing up', async () => {
    github.answer('checks/create', () => ({ status: 403, body: { message: 'Resource not accessible by personal access token' } }));
    const { publisher, outbox } = start();
    const queued = newBuild();
    await publisher.publish(queued);
    await publisher.flush();
    assert.equal(checksOf(queued).length, 1);
    assert.equal(outbox.size(), 0);
  });
});

/** when the stand-in took each update */
const receivedAt = new WeakMap<RecordedRequest, number>();
/** the id each create was answered with */
const createdIds = new WeakMap<RecordedRequest, number>();
