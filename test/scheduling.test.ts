import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Docker from 'dockerode';
import type { BuildView } from '../src/http/build-view.js';
import { BUILD_ID_LABEL, INSTANCE_LABEL } from '../src/runner/index.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import type { RecordedRequest } from './support/github-stand-in.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

const TOKEN = 'test-api-token';
const docker = new Docker({ socketPath: '/var/run/docker.sock' });
const containerOf = async (buildId: string) => (await docker.listContainers({ all: true, filters: { label: [`${BUILD_ID_LABEL}=${buildId}`] } }))[0];
const statusesFor = (sha: string) => (r: RecordedRequest) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === sha;

describe('scheduling, control API, timeouts, hardening and restarts', () => {
  let f: FixtureServer;
  const MAX_MEMORY = 256 * 1024 * 1024;

  before(async () => {
    f = await startFixtureServer('scheduling', {
      jobConcurrency: 1,
      jobBacklog: 1,
      api: { token: TOKEN },
      docker: { defaultImage: 'autobuilder/busybox:latest', network: 'none', memoryBytes: MAX_MEMORY, cpus: 1, pidsLimit: 128 },
      builds: { shutdownGraceSeconds: 1 },
    });
  });
  after(async () => {
    await f.close({ graceMs: 0 });
  });

  const push = async (ref: string, files: Record<string, string> = {}) => {
    const sha = Object.keys(files).length > 0 ? await f.repo.commit(files, `for ${ref}`) : await f.repo.commitEmpty(`for ${ref} ${Date.now()}`);
    const response = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref, sha, cloneUrl: f.cloneUrl }),
    });
    assert.equal(response.status, 202);
    return sha;
  };
  const buildOf = async (sha: string, ref: string, state?: string): Promise<BuildView> => {
    for (let i = 0; i < 300; i++) {
      const found = (await f.builds()).find((b) => b.sha === sha && b.ref === ref);
      if (found !== undefined && (state === undefined || found.state === state)) return found;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no build of ${sha} on ${ref}${state === undefined ? '' : ` in state ${state}`}`);
  };
  const post = (path: string, body: unknown, token: string | null = TOKEN) =>
    fetch(`${f.server.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token === null ? {} : { authorization: `Bearer ${token}` }) },
      body: JSON.stringify(body),
    });

  test('write endpoints need the bearer token', async () => {
    const missing = await post('/api/builds', { repo: 'acme/widget', ref: 'refs/heads/main' }, null);
    assert.equal(missing.status, 401);
    assert.match(missing.headers.get('www-authenticate') ?? '', /Bearer/);
    assert.equal((await post('/api/builds', { repo: 'acme/widget', ref: 'refs/heads/main' }, 'wrong')).status, 401);
    assert.equal((await post('/api/builds/nope/cancel', {}, null)).status, 401);
  });

  test('a manual trigger resolves the ref and builds it', async () => {
    // a webhook first, so the server knows the repository's clone URL
    const sha = await push('refs/heads/main', { 'message.txt': 'manual\n' });
    await f.waitForBuild((b) => b.sha === sha);
    const next = await f.repo.commit({ 'message.txt': 'manual 2\n' }, 'manual 2');
    const response = await post('/api/builds', { repo: 'acme/widget', ref: 'refs/heads/main' });
    assert.equal(response.status, 202);
    const { builds } = (await response.json()) as { builds: BuildView[] };
    assert.equal(builds[0]?.sha, next);
    const done = await f.waitForBuild((b) => b.id === builds[0]?.id);
    assert.equal(done.state, 'success');
    assert.equal(done.deliveryId, null);
  });

  test('a build past its timeout is killed and ends in error', async () => {
    const sha = await push('refs/heads/sleepy');
    const started = Date.now();
    const build = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/sleepy', 30_000);
    assert.equal(build.state, 'error');
    assert.equal(build.description, 'timed out after 2 s');
    assert.ok(Date.now() - started < 15_000);
    assert.equal(await containerOf(build.id), undefined, 'the container is gone');
    const statuses = await f.github.waitFor(statusesFor(sha), 2);
    assert.deepEqual(
      statuses.map((s) => (s.body as { state: string }).state),
      ['pending', 'error'],
    );
  });

  test('a build silent for longer than its output timeout is stopped', async () => {
    const sha = await push('refs/heads/quiet');
    const build = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/quiet', 30_000);
    assert.equal(build.state, 'error');
    assert.equal(build.description, 'no output for 1 s');
  });

  let long: BuildView;

  test('a running container is hardened and its limits capped by the server', async () => {
    const sha = await push('refs/heads/long');
    long = await buildOf(sha, 'refs/heads/long', 'running');
    let summary;
    for (let i = 0; i < 100 && summary === undefined; i++) {
      summary = await containerOf(long.id);
      if (summary === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(summary, 'the build has a container');
    const info = await docker.getContainer(summary.Id).inspect();
    assert.equal(info.HostConfig.Privileged, false);
    assert.deepEqual(info.HostConfig.CapDrop, ['ALL']);
    assert.deepEqual(info.HostConfig.CapAdd ?? [], []);
    assert.ok(info.HostConfig.SecurityOpt?.includes('no-new-privileges'));
    assert.equal(info.HostConfig.Memory, MAX_MEMORY, 'the definition asked for more: capped');
    assert.equal(info.HostConfig.NanoCpus, 1e9);
    assert.equal(info.HostConfig.PidsLimit, 64, 'the definition asked for less: granted');
    assert.equal(info.HostConfig.NetworkMode, 'none');
    const mounts = JSON.stringify([info.HostConfig.Binds, info.Mounts]);
    assert.doesNotMatch(mounts, /docker\.sock/);
    assert.equal(info.Config.Labels[BUILD_ID_LABEL], long.id);
    assert.ok(info.Config.Env.includes('AUTOBUILDER_REF_NAME=long'));
  });

  test('past the backlog the manual API answers 503 with Retry-After while webhooks still queue', async () => {
    assert.ok(long, 'needs the long build holding the only slot');
    type Queue = { running: string[]; waiting: { buildId: string; reason: string }[] };
    const queueOf = async (length: number): Promise<Queue> => {
      for (let i = 0; i < 200; i++) {
        const queue = (await (await fetch(`${f.server.url}/api/queue`)).json()) as Queue;
        if (queue.waiting.length === length) return queue;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`the queue never held ${length} builds`);
    };
    const waitingSha = await push('refs/heads/slow', { 'message.txt': 'waits\n' });
    const waiting = await buildOf(waitingSha, 'refs/heads/slow', 'queued');
    await queueOf(1);
    const refused = await post('/api/builds', { repo: 'acme/widget', ref: 'refs/heads/main' });
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('retry-after'), '30');
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'BACKLOG_FULL');

    const accepted = await push('refs/heads/feature/incremental', { 'feature.txt': 'past the backlog\n' });
    const queue = await queueOf(2);
    const past = await buildOf(accepted, 'refs/heads/feature/incremental', 'queued');
    assert.match(past.description ?? '', /backlog full/);
    assert.deepEqual(queue.running, [long.id]);
    assert.deepEqual(
      queue.waiting.map((w) => w.buildId),
      [waiting.id, past.id],
    );
    assert.equal(queue.waiting[1]?.reason, 'backlog full');
  });

  test('a newer push supersedes the waiting build of the same branch and definition', async () => {
    const older = (await f.builds()).find((b) => b.ref === 'refs/heads/slow' && b.state === 'queued');
    assert.ok(older);
    const newerSha = await push('refs/heads/slow', { 'message.txt': 'newer\n' });
    const newer = await buildOf(newerSha, 'refs/heads/slow');
    const superseded = await f.waitForBuild((b) => b.id === older.id);
    assert.equal(superseded.state, 'cancelled');
    assert.equal(superseded.description, `Superseded by build ${newer.id}`);
    const statuses = await f.github.waitFor(statusesFor(older.sha), 2);
    assert.deepEqual(
      statuses.map((s) => (s.body as { state: string }).state),
      ['pending', 'error'],
    );
  });

  test('cancelling a running build kills its container; cancelling it again is a conflict', async () => {
    const response = await post(`/api/builds/${long.id}/cancel`, {});
    assert.equal(response.status, 200);
    const cancelled = (await response.json()) as BuildView;
    assert.equal(cancelled.state, 'cancelled');
    assert.equal(cancelled.description, 'cancelled');
    assert.equal(await containerOf(long.id), undefined);
    const [, final] = await f.github.waitFor(statusesFor(long.sha), 2);
    assert.equal((final?.body as { state: string; description: string } | undefined)?.state, 'error');
    assert.equal((final?.body as { description: string } | undefined)?.description, 'cancelled');
    assert.equal((await post(`/api/builds/${long.id}/cancel`, {})).status, 409);
  });

  test('a restart resumes queued builds under their ids; running ones are cancelled after the grace period', async () => {
    const runningSha = await push('refs/heads/long');
    const running = await buildOf(runningSha, 'refs/heads/long', 'running');
    const queuedSha = await push('refs/heads/slow', { 'message.txt': 'survives a restart\n' });
    const queued = await buildOf(queuedSha, 'refs/heads/slow', 'queued');
    await f.restart();
    const stopped = (await (await fetch(`${f.server.url}/api/builds/${running.id}`)).json()) as BuildView;
    assert.equal(stopped.state, 'cancelled');
    assert.equal(stopped.description, 'autobuilder stopped');
    const resumed = await f.waitForBuild((b) => b.id === queued.id);
    assert.equal(resumed.state, 'success', resumed.description ?? '');
    const log = await (await fetch(resumed.logUrl)).text();
    assert.match(log, /resumed after a restart/);
  });

  test("a restart removes the containers a killed process left, and only this server's", async () => {
    const instance = createHash('sha256').update(join(f.dir, 'data')).digest('hex').slice(0, 16);
    const leftover = async (labels: Record<string, string>) => {
      const c = await docker.createContainer({
        Image: 'autobuilder/busybox:latest',
        Cmd: ['sleep', '60'],
        Labels: labels,
        HostConfig: { NetworkMode: 'none' },
      });
      await c.start();
      return c;
    };
    const ours = await leftover({ [BUILD_ID_LABEL]: 'left-by-a-killed-process', [INSTANCE_LABEL]: instance });
    const theirs = await leftover({ [BUILD_ID_LABEL]: 'of-another-server', [INSTANCE_LABEL]: 'another-instance' });
    try {
      await f.restart();
      await assert.rejects(ours.inspect(), (err: { statusCode?: number }) => err.statusCode === 404);
      assert.equal((await theirs.inspect()).State.Running, true);
    } finally {
      await theirs.remove({ force: true });
      await ours.remove({ force: true }).catch(() => undefined);
    }
  });
});

describe('back-pressure counts every build that waits', () => {
  let f: FixtureServer;
  before(async () => {
    f = await startFixtureServer('backlog', { jobConcurrency: 1, jobBacklog: 1, api: { token: TOKEN } });
  });
  after(async () => {
    await f.close({ graceMs: 0 });
  });

  test('four manual builds 700 ms apart (one slot, backlog 1, one commit on four branches): 202, 202, 503, 503, and /api/queue lists the waiting one', async () => {
    // a webhook first: the manual API clones from the URL of the repository's last delivery
    const mainSha = f.repo.head as string;
    const pushed = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha: mainSha, cloneUrl: f.cloneUrl }),
    });
    assert.equal(pushed.status, 202);
    assert.equal((await f.waitForBuild((b) => b.sha === mainSha && b.ref === 'refs/heads/main')).state, 'success');
    for (const name of ['queue/a', 'queue/b', 'queue/c', 'queue/d']) await f.repo.branch(name);
    const answers: Response[] = [];
    for (const name of ['queue/a', 'queue/b', 'queue/c', 'queue/d']) {
      if (answers.length > 0) await new Promise((r) => setTimeout(r, 700));
      answers.push(
        await fetch(`${f.server.url}/api/builds`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
          body: JSON.stringify({ repo: 'acme/widget', ref: `refs/heads/${name}` }),
        }),
      );
    }
    assert.deepEqual(
      answers.map((r) => r.status),
      [202, 202, 503, 503],
    );
    for (const refused of answers.slice(2)) {
      assert.equal(refused.headers.get('retry-after'), '30');
      assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'BACKLOG_FULL');
    }
    const [first, second] = await Promise.all(answers.slice(0, 2).map(async (r) => ((await r.json()) as { builds: BuildView[] }).builds[0]));
    assert.ok(first && second);
    const queue = (await (await fetch(`${f.server.url}/api/queue`)).json()) as {
      running: string[];
      waiting: { buildId: string; waitsFor: string; joined: string | null; build: BuildView | null }[];
    };
    assert.deepEqual(queue.running, [first.id]);
    assert.deepEqual(
      queue.waiting.map((w) => [w.buildId, w.waitsFor, w.joined, w.build?.state]),
      [[second.id, 'build', first.id, 'queued']],
    );
    const stored = await f.builds();
    assert.deepEqual(
      stored.filter((b) => b.state === 'queued').map((b) => b.id),
      [second.id],
      'the store holds no other queued build',
    );

    // cancelling the running build hands it over to the one that joined it: that one runs now
    const cancel = (id: string) => fetch(`${f.server.url}/api/builds/${id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal((await cancel(first.id)).status, 200);
    const takenOver = await (async () => {
      for (let i = 0; i < 200; i++) {
        const b = (await f.builds()).find((x) => x.id === second.id);
        if (b?.state === 'running') return b;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error('the joined build never ran');
    })();
    assert.equal(takenOver.coalesced, false);
    assert.equal((await cancel(second.id)).status, 200);
  });
});
