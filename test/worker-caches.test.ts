import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BuildView } from '../src/http/build-view.js';
import type { RunningWorker } from '../src/worker/start-worker.js';
import { makeTestDir } from './support/data-dir.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { startRedisServer, type RunningRedis } from './support/redis-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';
import { startTestWorker } from './support/worker-process.js';

const TOKEN = 'worker-caches-token-0123456789';

/** Copies what its cache held to its artifact, appends its branch, and reports the host mount. */
const SCRIPT = `#!/bin/sh
set -eu
mkdir -p /tmp/out /root/.cache/x
touch /root/.cache/x/log
cp /root/.cache/x/log /tmp/out/result.txt
echo "$AUTOBUILDER_REF_NAME" >> /root/.cache/x/log
echo "host mount: $(cat /opt/host-tools/hello.txt 2>/dev/null || echo absent)"
`;

describe('persistent caches on a build worker', () => {
  let redis: RunningRedis;
  let f: FixtureServer;
  let worker: RunningWorker;

  before(async () => {
    const dir = await makeTestDir('worker-caches-config');
    const config = join(dir, 'config');
    await mkdir(join(config, 'acme', 'widget'), { recursive: true });
    await writeFile(
      join(config, 'acme', 'widget', 'any.yaml'),
      "on: { branches: ['**'] }\nbuildscripts: [autobuild/cache.sh]\nautobuild/cache.sh:\n  archives: /tmp/out\n  artifact: result.txt\n  caches: [/root/.cache/x]\n",
    );
    await mkdir(join(dir, 'host-tools'));
    await writeFile(join(dir, 'host-tools', 'hello.txt'), 'hello from the host');
    redis = await startRedisServer({ password: 'redis-test-password' });
    f = await startFixtureServer('worker-caches', {
      configRepository: { path: config },
      builds: { mounts: [{ host: join(dir, 'host-tools'), container: '/opt/host-tools' }] },
      dispatch: { mode: 'bullmq', redis: { url: redis.url }, workers: { w1: { token: TOKEN } }, heartbeatTimeoutSeconds: 3 },
    });
    await f.repo.commit({ 'autobuild/cache.sh': SCRIPT }, 'the cache build');
    worker = await startTestWorker({ id: 'w1', token: TOKEN, serverUrl: f.server.url, redisUrl: redis.url, dir: f.dir });
  });
  after(async () => {
    await worker.close().catch(() => undefined);
    await f.close({ graceMs: 0 });
    await redis.stop();
  });

  const build = async (branch: string): Promise<BuildView> => {
    const sha = await f.repo.commit({ 'branch.txt': `${branch} ${Date.now()}\n` }, branch);
    const response = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: `refs/heads/${branch}`, sha, cloneUrl: f.cloneUrl }),
    });
    assert.equal(response.status, 202);
    const b = await f.waitForBuild((x) => x.sha === sha && x.ref === `refs/heads/${branch}`);
    assert.equal(b.state, 'success', b.description ?? '');
    return b;
  };
  const seen = async (b: BuildView) => (await fetch(b.artifacts[0]?.url ?? '')).text();

  test("the worker keeps the repository's caches on its own disk: a second branch starts from the first's cache", async () => {
    const main = await build('main');
    assert.equal(await seen(main), '');
    const topic = await build('topic');
    assert.equal(await seen(topic), 'main\n');
    const log = await (await fetch(topic.logUrl)).text();
    assert.match(log, /dispatched to worker w1/);
    assert.match(log, new RegExp(`cache /root/\\.cache/x: snapshot of build ${main.id}'s`));
    assert.match(log, /^host mount: hello from the host$/m, 'the host mounts go to the worker with the job');
    const head = join(f.dir, 'worker-w1', 'caches', 'acme', 'widget', 'repository', 'root+.cache+x', 'head');
    assert.equal(await readlink(head), topic.id);
    assert.equal(existsSync(join(f.dir, 'data', 'caches', 'acme')), false, "the server's own data directory holds no cache");
  });
});
