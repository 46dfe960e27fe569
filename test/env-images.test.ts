import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Docker from 'dockerode';
import type { BuildView } from '../src/http/build-view.js';
import { CONFIG_CONTEXT_LIMITS } from '../src/images/build-context.js';
import { planEnvImage } from '../src/images/env-image.js';
import { readDirectoryContext } from '../src/images/git-context.js';
import type { RunningWorker } from '../src/worker/start-worker.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { startRedisServer, type RunningRedis } from './support/redis-server.js';
import { simpleGit } from 'simple-git';
import { deliver, pullRequestPayload, pushPayload } from './support/webhook-delivery.js';
import { startTestWorker } from './support/worker-process.js';

const docker = new Docker({ socketPath: '/var/run/docker.sock' });
const CONFIG_REPO = join(import.meta.dirname, 'fixtures', 'config-repo');

/** The build script of the env definitions: what the image holds becomes the artifact. */
const SCRIPT = ['#!/bin/sh', 'set -eu', 'mkdir -p /tmp/out', 'cat /etc/env-marker > /tmp/out/env.txt', 'env-tool >> /tmp/out/env.txt', ''].join('\n');

/** A Dockerfile for env/Dockerfile of the built commit. */
const dockerfile = (version: number, run = `echo "$GREETING from the commit's Dockerfile, version ${version}" > /etc/env-marker`) =>
  ['FROM autobuilder/busybox:latest', 'ARG GREETING=none', 'COPY env-tool /usr/local/bin/env-tool', `RUN ${run} && chmod +x /usr/local/bin/env-tool`, ''].join(
    '\n',
  );

/** The id of the image `name` on the engine, or null. */
const imageIdOf = (name: string): Promise<string | null> =>
  docker
    .getImage(name)
    .inspect()
    .then(
      (i) => i.Id,
      () => null,
    );

describe('build environments from Dockerfiles', () => {
  let f: FixtureServer;
  /** env image tags made by this test, removed at the end */
  const made = new Set<string>();
  let configTag: string;

  before(async () => {
    f = await startFixtureServer('env-images', { retention: { keepPerBranch: 1, intervalSeconds: 3600, artifactGraceSeconds: 0 } });
    // the config repository's Dockerfile is the same in every run: its image must be built by this one
    const read = await readDirectoryContext(CONFIG_REPO, 'envs', CONFIG_CONTEXT_LIMITS);
    configTag = planEnvImage({
      spec: { source: 'config', path: 'envs/tools/Dockerfile', context: 'envs', buildArgs: {} },
      listing: read,
      contents: read.contents,
      fork: false,
    }).tag;
    await docker
      .getImage(configTag)
      .remove()
      .catch(() => undefined);
  });
  after(async () => {
    await f.close();
    for (const tag of made)
      await docker
        .getImage(tag)
        .remove()
        .catch(() => undefined);
  });

  const push = async (ref: string, sha: string) => {
    const response = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref, sha, tree: await f.repo.treeOf(sha), cloneUrl: f.cloneUrl }),
    });
    assert.equal(response.status, 202);
    return f.waitForBuild((b) => b.sha === sha && b.ref === ref, 120_000);
  };
  const logOf = async (b: BuildView) => (await fetch(b.logUrl)).text();
  const artifactText = async (b: BuildView) => Buffer.from(await (await fetch(b.artifacts[0]?.url ?? '')).arrayBuffer()).toString();
  /** The env image tag a build's log names. */
  const tagIn = (log: string): string => {
    const tag = /autobuilder\/env:[0-9a-f]{64}/.exec(log)?.[0];
    assert.ok(tag !== undefined, `no env image in the log:\n${log}`);
    made.add(tag);
    return tag;
  };

  let first: BuildView;
  let firstTag: string;
  let thirdTag: string;
  test('a Dockerfile of the built commit is built once, its output a section of the build log', async () => {
    // a context unique to this run: its image cannot be left from an earlier one
    const sha = await f.repo.commit(
      {
        'autobuild/env.sh': SCRIPT,
        'env/Dockerfile': dockerfile(1),
        'env/env-tool': '#!/bin/sh\necho "tool ran"\n',
        'env/run.txt': randomBytes(8).toString('hex'),
      },
      'a build environment from a Dockerfile',
    );
    first = await push('refs/heads/env/one', sha);
    assert.equal(first.state, 'success', first.description ?? '');
    assert.equal(await artifactText(first), "hello from the commit's Dockerfile, version 1\ntool ran\n");
    const log = await logOf(first);
    firstTag = tagIn(log);
    assert.match(log, /\[autobuilder\] image: building autobuilder\/env:[0-9a-f]{64} from env\/Dockerfile \(context env: 3 files, /);
    assert.match(log, /^Step 1\/\d+ : FROM autobuilder\/busybox:latest$/m);
    assert.match(log, /\[autobuilder\] image: built autobuilder\/env:[0-9a-f]{64} \(sha256:[0-9a-f]{64}\) in [\d.]+ s/);
    assert.match(log, new RegExp(`running autobuild/env.sh in ${firstTag}`));
    // the image id, not the tag, is the cache input once the image exists
    const id = await imageIdOf(firstTag);
    assert.match(id ?? '', /^sha256:/);
    assert.equal(first.cacheInputs?.image, id);
  });

  test('a second build with the same Dockerfile and context reuses the image: no image build in its log', async () => {
    assert.ok(first, 'needs the first build');
    const sha = await f.repo.commit({ 'message.txt': 'only the project changed\n' }, 'not the environment');
    const second = await push('refs/heads/env/one', sha);
    assert.equal(second.state, 'success', second.description ?? '');
    const log = await logOf(second);
    assert.match(log, new RegExp(`\\[autobuilder\\] image: ${firstTag} \\(sha256:[0-9a-f]{64}\\) from env/Dockerfile, built before`));
    assert.doesNotMatch(log, /image: building/);
    assert.doesNotMatch(log, /^Step \d+\/\d+ :/m);
    assert.deepEqual(second.cacheMiss?.differs, ['tree']);
    assert.equal(second.cacheInputs?.image, first.cacheInputs?.image);
  });

  test('a changed Dockerfile is built again, and the cache miss names image', async () => {
    const sha = await f.repo.commit({ 'env/Dockerfile': dockerfile(2) }, 'a new build environment');
    const third = await push('refs/heads/env/one', sha);
    assert.equal(third.state, 'success', third.description ?? '');
    assert.equal(await artifactText(third), "hello from the commit's Dockerfile, version 2\ntool ran\n");
    const log = await logOf(third);
    assert.match(log, /image: building/);
    thirdTag = tagIn(log);
    assert.notEqual(thirdTag, firstTag);
    assert.ok(third.cacheMiss?.differs.includes('image'), JSON.stringify(third.cacheMiss));
    assert.notEqual(third.cacheInputs?.image, first.cacheInputs?.image);
  });

  test('a Dockerfile of the config repository, with its context there', async () => {
    const sha = await f.repo.commit({ 'message.txt': 'built in the config repository environment\n' }, 'env-config');
    const built = await push('refs/heads/env-config', sha);
    assert.equal(built.state, 'success', built.description ?? '');
    assert.equal(await artifactText(built), 'from the config repository\ntool ran\n');
    const log = await logOf(built);
    assert.equal(tagIn(log), configTag);
    assert.match(log, new RegExp(`image: building ${configTag} from config:envs/tools/Dockerfile \\(context envs: 2 files`));
    const again = await push('refs/heads/env-config', await f.repo.commit({ 'message.txt': 'once more\n' }, 'env-config again'));
    assert.equal(again.state, 'success', again.description ?? '');
    const againLog = await logOf(again);
    assert.match(againLog, /from config:envs\/tools\/Dockerfile, built before/);
    assert.doesNotMatch(againLog, /image: building/);
  });

  test('a FROM image that is not on the engine ends the build error naming it and its line', async () => {
    const sha = await f.repo.commit({ 'env/Dockerfile': '# no registry is reached\nFROM autobuilder/no-such-base:1\nRUN true\n' }, 'a base image nobody has');
    const build = await push('refs/heads/env/missing', sha);
    assert.equal(build.state, 'error');
    assert.match(build.description ?? '', /base image autobuilder\/no-such-base:1 \(FROM at env\/Dockerfile:2\) is not on this Docker engine/);
    assert.doesNotMatch(await logOf(build), /^Step /m, 'nothing was built');
  });

  test('a failing RUN step ends the build failure naming the image step', async () => {
    const sha = await f.repo.commit({ 'env/Dockerfile': dockerfile(3, 'echo about to fail && exit 3') }, 'a RUN step that fails');
    const build = await push('refs/heads/env/fails', sha);
    assert.equal(build.state, 'failure');
    assert.match(build.description ?? '', /^image env\/Dockerfile: build failed at Step 4\/\d+ : RUN echo about to fail && exit 3/);
    assert.match(build.description ?? '', /returned a non-zero code: 3/);
    const log = await logOf(build);
    assert.match(log, /^about to fail$/m);
    assert.equal(await imageIdOf(tagIn(log)), null, 'a failed image build tags nothing');
  });

  test('retention removes the env images no kept build uses, and keeps the others', async () => {
    assert.ok(thirdTag, 'needs the rebuilt image');
    assert.notEqual(await imageIdOf(firstTag), null);
    // keepPerBranch 1: the two builds of env/one in the first image go, the one in the second stays
    const report = await f.server.retention.run();
    assert.ok(report.envImagesRemoved >= 1, JSON.stringify(report));
    assert.equal(await imageIdOf(firstTag), null, 'the first image is used by no kept build');
    assert.notEqual(await imageIdOf(thirdTag), null, 'the image of the kept build stays');
    assert.notEqual(await imageIdOf(configTag), null, 'the config repository image of kept builds stays');
  });
});

describe('build environments from Dockerfiles on a build worker', () => {
  let redis: RunningRedis;
  let f: FixtureServer;
  let worker: RunningWorker | null = null;
  const made = new Set<string>();

  before(async () => {
    redis = await startRedisServer({ password: 'redis-test-password' });
    f = await startFixtureServer('env-images-worker', {
      dispatch: { mode: 'bullmq', redis: { url: redis.url }, workers: { w1: { token: 'env-worker-token-0123456789' } } },
    });
    worker = await startTestWorker({ id: 'w1', token: 'env-worker-token-0123456789', serverUrl: f.server.url, redisUrl: redis.url, dir: f.dir });
  });
  after(async () => {
    await worker?.close().catch(() => undefined);
    await f.close({ graceMs: 0 });
    await redis.stop();
    for (const tag of made)
      await docker
        .getImage(tag)
        .remove()
        .catch(() => undefined);
  });

  const push = async (sha: string) => {
    const ref = 'refs/heads/env/worker';
    const response = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref, sha, tree: await f.repo.treeOf(sha), cloneUrl: f.cloneUrl }),
    });
    assert.equal(response.status, 202);
    return f.waitForBuild((b) => b.sha === sha && b.ref === ref, 120_000);
  };

  test('the worker builds the image on its engine, keyed by its tag, and reuses it for the next build', async () => {
    const sha = await f.repo.commit(
      {
        'autobuild/env.sh': SCRIPT,
        'env/Dockerfile': dockerfile(1),
        'env/env-tool': '#!/bin/sh\necho "tool ran"\n',
        'env/run.txt': randomBytes(8).toString('hex'),
      },
      'a build environment built on a worker',
    );
    const first = await push(sha);
    assert.equal(first.state, 'success', first.description ?? '');
    assert.equal(first.worker, 'w1');
    assert.equal(
      Buffer.from(await (await fetch(first.artifacts[0]?.url ?? '')).arrayBuffer()).toString(),
      "hello from the commit's Dockerfile, version 1\ntool ran\n",
    );
    const log = await (await fetch(first.logUrl)).text();
    const tag = /image: building (autobuilder\/env:[0-9a-f]{64})/.exec(log)?.[1];
    assert.ok(tag !== undefined, log);
    made.add(tag);
    // each worker builds on its own engine: the tag, which names the content, is the key's input
    assert.equal(first.cacheInputs?.image, tag);

    const second = await push(await f.repo.commit({ 'message.txt': 'on the worker again\n' }, 'not the environment'));
    assert.equal(second.state, 'success', second.description ?? '');
    const secondLog = await (await fetch(second.logUrl)).text();
    assert.match(secondLog, /from env\/Dockerfile, built before/);
    assert.doesNotMatch(secondLog, /image: building/);
    assert.deepEqual(second.cacheMiss?.differs, ['tree']);
  });
});

describe("the network of an env image's RUN steps", () => {
  let f: FixtureServer;
  const made = new Set<string>();
  before(async () => {
    f = await startFixtureServer('env-images-network', { docker: { defaultImage: 'autobuilder/busybox:latest', network: 'autobuilder-builds' } });
  });
  after(async () => {
    await f.close({ graceMs: 0 });
    for (const tag of made)
      await docker
        .getImage(tag)
        .remove()
        .catch(() => undefined);
  });

  test("is the builds' network for a push, none for a pull request from a fork, whose image is its own", async () => {
    const send = async (event: string, payload: Record<string, unknown>) => {
      const response = await deliver(f.server.url, { event, payload, secret: f.secret });
      assert.equal(response.status, 202, JSON.stringify(response.body));
    };
    const files = {
      'autobuild/env.sh': SCRIPT,
      'env/Dockerfile': dockerfile(1, 'echo "interfaces: $(ls /sys/class/net | tr "\\n" " ")" > /etc/env-marker'),
      'env/env-tool': '#!/bin/sh\necho "tool ran"\n',
      'env/run.txt': randomBytes(8).toString('hex'),
    };
    const pushSha = await f.repo.commit(files, 'trusted');
    await send('push', pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/env/net', sha: pushSha, cloneUrl: f.cloneUrl }));
    const pushed = await f.waitForBuild((b) => b.sha === pushSha, 120_000);
    assert.equal(pushed.state, 'success', pushed.description ?? '');
    const pushedLog = await (await fetch(pushed.logUrl)).text();
    const trustedTag = /image: building (autobuilder\/env:[0-9a-f]{64})/.exec(pushedLog)?.[1] ?? '';
    made.add(trustedTag);
    assert.match(Buffer.from(await (await fetch(pushed.artifacts[0]?.url ?? '')).arrayBuffer()).toString(), /^interfaces: eth0 lo \n/);

    const forkSha = await f.repo.commit({ 'message.txt': 'from a fork\n' }, 'fork');
    await simpleGit({ baseDir: f.repo.dir }).raw(['update-ref', 'refs/pull/9/head', forkSha]);
    await send(
      'pull_request',
      pullRequestPayload({
        owner: 'acme',
        repo: 'widget',
        cloneUrl: f.cloneUrl,
        action: 'opened',
        number: 9,
        head: 'env/net',
        sha: forkSha,
        base: 'env/net',
        fork: 'mallory/widget',
      }),
    );
    const fork = await f.waitForBuild((b) => b.sha === forkSha, 120_000);
    assert.equal(fork.state, 'success', fork.description ?? '');
    const forkLog = await (await fetch(fork.logUrl)).text();
    const forkTag = /image: building (autobuilder\/env:[0-9a-f]{64})/.exec(forkLog)?.[1];
    assert.ok(forkTag !== undefined, `the fork's build makes its own image:\n${forkLog}`);
    made.add(forkTag);
    assert.notEqual(forkTag, trustedTag);
    // its steps share no cached layer with the trusted image: they ran, without a network
    assert.match(forkLog, /^Step 2\/\d+ : ENV AUTOBUILDER_FORK_BUILD=true$/m);
    assert.doesNotMatch(forkLog, /Using cache/);
    assert.equal(Buffer.from(await (await fetch(fork.artifacts[0]?.url ?? '')).arrayBuffer()).toString(), 'interfaces: lo \ntool ran\n');
  });
});
