import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isBtrfs } from '../src/snapshots/index.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import type { RecordedRequest } from './support/github-stand-in.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

const isStatusFor = (sha: string) => (r: RecordedRequest) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === sha;

describe('a signed push webhook becomes a container build over a Btrfs snapshot', () => {
  let f: FixtureServer;

  before(async () => {
    f = await startFixtureServer('e2e', { snapshotDriver: 'btrfs' });
  });
  after(async () => {
    await f.close();
  });

  const push = async (ref: string, sha: string) => {
    const response = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref, sha, cloneUrl: f.cloneUrl }),
    });
    assert.equal(response.status, 202, JSON.stringify(response.body));
    return response;
  };

  test('runs on the real Btrfs volume', async () => {
    assert.equal(f.server.snapshotDriver, 'btrfs');
    assert.ok(await isBtrfs(f.dir), 'run scripts/host-setup.sh: the data dir must be on Btrfs');
  });

  let first: Awaited<ReturnType<FixtureServer['waitForBuild']>>;
  let second: Awaited<ReturnType<FixtureServer['waitForBuild']>>;

  test('builds the pushed commit, stores its artifact by sha256 and posts pending then success', async () => {
    const sha = f.repo.head as string;
    const started = Date.now();
    await push('refs/heads/main', sha);
    assert.ok(Date.now() - started < 1000, 'the webhook is answered before the build runs');
    first = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/main');

    assert.equal(first.state, 'success', first.description ?? '');
    assert.equal(first.exitCode, 0);
    assert.equal(first.incremental, false);
    assert.equal(first.context, 'autobuilder/autobuild/build.sh');
    assert.equal(first.repo, 'acme/widget');

    const expected = await readFile(join(f.repo.dir, 'message.txt'));
    const digest = createHash('sha256').update(expected).digest('hex');
    assert.equal(first.artifacts.length, 1);
    const [artifact] = first.artifacts;
    assert.equal(artifact?.name, 'result.txt');
    assert.equal(artifact.digest, digest);
    assert.equal(artifact.size, expected.length);
    const download = await fetch(artifact.url);
    assert.equal(download.status, 200);
    assert.equal(download.headers.get('etag'), `"${digest}"`);
    assert.deepEqual(Buffer.from(await download.arrayBuffer()), expected);

    const statuses = await f.github.waitFor(isStatusFor(sha), 2);
    assert.deepEqual(
      statuses.map((s) => (s.body as { state: string }).state),
      ['pending', 'success'],
    );
    for (const s of statuses) {
      const body = s.body as { context: string; target_url: string; description: string };
      assert.equal(s.params['owner'], 'acme');
      assert.equal(s.params['repo'], 'widget');
      assert.equal(body.context, 'autobuilder/autobuild/build.sh');
      assert.equal(body.target_url, `${f.server.publicUrl}/builds/${first.id}`);
      assert.ok(body.description.length <= 140);
    }
    assert.deepEqual(f.github.rejected, []);

    const log = await (await fetch(first.logUrl)).text();
    assert.match(log, new RegExp(`build of ${sha} on refs/heads/main`));
    assert.match(log, /a line on stderr/);
    assert.doesNotMatch(log, /found untracked/);

    const page = await fetch(first.pageUrl);
    assert.equal(page.status, 200);
    assert.match(await page.text(), new RegExp(`build of ${sha}`));
  });

  test('runs the next push of the branch in a snapshot of the last green workspace', async () => {
    assert.ok(first, 'needs the first build');
    const sha = await f.repo.commit({ 'message.txt': 'widget artifact, version 2\n' }, 'version 2');
    await push('refs/heads/main', sha);
    second = await f.waitForBuild((b) => b.sha === sha);
    assert.equal(second.state, 'success', second.description ?? '');
    assert.equal(second.incremental, true);
    assert.equal(second.parentBuildId, first.id);
    const log = await (await fetch(second.logUrl)).text();
    assert.match(log, new RegExp(`found untracked: left by ${first.id}`));
    const bytes = Buffer.from(await (await fetch(second.artifacts[0]?.url ?? '')).arrayBuffer());
    assert.equal(bytes.toString(), 'widget artifact, version 2\n');
  });

  test('reports a failing script as failure with its exit code and a failure status', async () => {
    const sha = await f.repo.commitEmpty('trigger the failing definition');
    const seen: string[] = [];
    for (const name of ['build.queued', 'build.started', 'build.updated', 'build.finished'] as const) {
      f.server.events.on(name, (b) => b.sha === sha && seen.push(`${name}:${b.state}`));
    }
    await push('refs/heads/fails', sha);
    const failed = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/fails');
    assert.deepEqual(seen, [
      'build.queued:queued',
      'build.updated:queued', // cache key known
      'build.updated:queued', // why it is not a cache hit
      'build.updated:queued', // why it waits
      'build.started:running',
      'build.updated:running', // workspace made
      'build.finished:failure',
    ]);
    assert.equal(failed.state, 'failure');
    assert.equal(failed.exitCode, 3);
    assert.equal(failed.context, 'autobuilder/fails');
    assert.deepEqual(failed.artifacts, []);
    const statuses = await f.github.waitFor(isStatusFor(sha), 2);
    assert.deepEqual(
      statuses.map((s) => (s.body as { state: string }).state),
      ['pending', 'failure'],
    );
    assert.match((statuses[1]?.body as { description: string } | undefined)?.description ?? '', /exited with code 3/);
    const log = await (await fetch(failed.logUrl)).text();
    assert.match(log, /about to fail/);
  });

  test('a new branch with a slash matches its subdirectory definition and starts from the default branch', async () => {
    assert.ok(second, 'needs the second build');
    const sha = await f.repo.commit({ 'feature.txt': 'feature work\n' }, 'feature work');
    await push('refs/heads/feature/incremental', sha);
    const build = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/feature/incremental');
    assert.equal(build.state, 'success', build.description ?? '');
    // a new branch has no green build yet: it starts from main's last green workspace
    assert.equal(build.incremental, true);
    assert.equal(build.parentBuildId, second.id);
  });
});
