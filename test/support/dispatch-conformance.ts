import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import Docker from 'dockerode';
import type { BuildView } from '../../src/http/build-view.js';
import { BUILD_ID_LABEL } from '../../src/runner/index.js';
import type { FixtureServer } from './fixture-server.js';
import type { RecordedRequest } from './github-stand-in.js';
import { deliver, pushPayload } from './webhook-delivery.js';

/** A server to run the suite against, and how to stop it with whatever it started. */
export interface DispatchUnderTest {
  f: FixtureServer;
  /** the `worker` a build that ran must name: null in local mode, else one of these ids */
  workers: readonly string[] | null;
  /** the API token of the fixture's config */
  apiToken: string;
  close(): Promise<void>;
}

const docker = new Docker({ socketPath: '/var/run/docker.sock' });

/**
 * The one suite every way of running builds passes (local mode, bullmq workers): the same
 * requests through the real server, real git, Docker and Btrfs, and the same answers.
 */
export function dispatchConformance(name: string, start: () => Promise<DispatchUnderTest>): void {
  describe(`build dispatch conformance: ${name}`, () => {
    let d: DispatchUnderTest;
    before(async () => {
      d = await start();
    });
    after(async () => {
      await d.close();
    });

    const push = async (ref: string, files: Record<string, string> = {}) => {
      const sha = Object.keys(files).length > 0 ? await d.f.repo.commit(files, `for ${ref}`) : await d.f.repo.commitEmpty(`for ${ref} ${Date.now()}`);
      const response = await deliver(d.f.server.url, {
        event: 'push',
        secret: d.f.secret,
        payload: pushPayload({ owner: 'acme', repo: 'widget', ref, sha, cloneUrl: d.f.cloneUrl }),
      });
      assert.equal(response.status, 202);
      return sha;
    };
    const ended = (sha: string, ref: string) => d.f.waitForBuild((b) => b.sha === sha && b.ref === ref, 90_000);
    const statesPosted = async (sha: string, count: number) =>
      (await d.f.github.waitFor((r: RecordedRequest) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === sha, count, 60_000)).map(
        (r) => (r.body as { state: string }).state,
      );
    const checkWorker = (build: BuildView) => {
      const worker = (build as BuildView & { worker: string | null }).worker;
      if (d.workers === null) assert.equal(worker, null);
      else assert.ok(worker !== null && d.workers.includes(worker), `ran on a known worker: ${String(worker)}`);
    };

    test('a build succeeds: its output in order, its artifact by digest, statuses pending then success; the next build of the branch is incremental', async () => {
      const sha = await push('refs/heads/chatty', { 'message.txt': `conformance ${name}\n` });
      const build = await ended(sha, 'refs/heads/chatty');
      assert.equal(build.state, 'success', build.description ?? '');
      assert.equal(build.exitCode, 0);
      checkWorker(build);
      const log = await (await fetch(build.logUrl)).text();
      const numbers = [...log.matchAll(/chatty line (\d+) of 150/g)].map((m) => Number(m[1]));
      assert.deepEqual(
        numbers,
        Array.from({ length: 150 }, (_, i) => i + 1),
        'every line once, in order',
      );
      const [artifact] = build.artifacts;
      assert.ok(artifact);
      const body = Buffer.from(await (await fetch(`${d.f.server.url}/api/artifacts/${artifact.digest}`)).arrayBuffer());
      assert.equal(createHash('sha256').update(body).digest('hex'), artifact.digest);
      assert.equal(body.toString(), `conformance ${name}\n`);
      assert.deepEqual(await statesPosted(sha, 2), ['pending', 'success']);

      const next = await push('refs/heads/chatty', { 'message.txt': `conformance ${name}, again\n` });
      const second = await ended(next, 'refs/heads/chatty');
      assert.equal(second.state, 'success', second.description ?? '');
      assert.equal(second.incremental, true);
      assert.equal(second.parentBuildId, build.id);
      // with workers: the worker that holds the branch's lineage ran it
      assert.equal((second as BuildView & { worker: string | null }).worker, (build as BuildView & { worker: string | null }).worker);
    });

    test('a failing script ends failure with its exit code and output', async () => {
      const sha = await push('refs/heads/fails');
      const build = await ended(sha, 'refs/heads/fails');
      assert.equal(build.state, 'failure');
      assert.equal(build.exitCode, 3);
      checkWorker(build);
      assert.match(await (await fetch(build.logUrl)).text(), /about to fail/);
      assert.deepEqual(await statesPosted(sha, 2), ['pending', 'failure']);
    });

    test('a build past its timeout ends error, its container gone', async () => {
      const sha = await push('refs/heads/sleepy');
      const build = await ended(sha, 'refs/heads/sleepy');
      assert.equal(build.state, 'error');
      assert.equal(build.description, 'timed out after 2 s');
      const left = await docker.listContainers({ all: true, filters: { label: [`${BUILD_ID_LABEL}=${build.id}`] } });
      assert.deepEqual(left, []);
    });

    test('a cancel stops a running build within 2 s', async () => {
      const sha = await push('refs/heads/long');
      let running: BuildView | undefined;
      for (let i = 0; i < 600 && running === undefined; i++) {
        running = (await d.f.builds()).find((b) => b.sha === sha && b.ref === 'refs/heads/long' && b.state === 'running');
        // the container has started once its output is in the log
        if (running !== undefined && !/sleeping as long/.test(await (await fetch(running.logUrl)).text())) running = undefined;
        if (running === undefined) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(running, 'the build runs');
      const started = Date.now();
      const response = await fetch(`${d.f.server.url}/api/builds/${running.id}/cancel`, {
        method: 'POST',
        headers: { authorization: `Bearer ${d.apiToken}` },
      });
      assert.equal(response.status, 200);
      const cancelled = (await response.json()) as BuildView;
      const seconds = (Date.now() - started) / 1000;
      assert.equal(cancelled.state, 'cancelled');
      assert.ok(seconds <= 2, `cancelled after ${seconds} s`);
      checkWorker(cancelled);
      const left = await docker.listContainers({ all: true, filters: { label: [`${BUILD_ID_LABEL}=${running.id}`] } });
      assert.deepEqual(left, []);
    });
  });
}
