import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { simpleGit } from 'simple-git';
import type { BuildView } from '../src/http/build-view.js';
import { makeTestDir } from './support/data-dir.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, pullRequestPayload, pushPayload } from './support/webhook-delivery.js';

/**
 * The build of every branch: it copies what its cache held to its artifact, then appends its
 * ref name to it; `mode.txt` of the commit says what else it does (fail, write 8 MiB into the
 * cache, or mark the cache and wait so that two builds overlap). It also reports the host
 * mount at /opt/host-tools and whether it can write there.
 */
const SCRIPT = `#!/bin/sh
set -eu
mkdir -p /tmp/out /root/.cache/x
touch /root/.cache/x/log
mode=$(cat mode.txt)
cp /root/.cache/x/log /tmp/out/result.txt
echo "$AUTOBUILDER_REF_NAME" >> /root/.cache/x/log
if [ -f /opt/host-tools/hello.txt ]; then echo "host mount: $(cat /opt/host-tools/hello.txt)"; else echo "host mount: absent"; fi
if (echo x > /opt/host-tools/written) 2>/dev/null; then echo "host mount write: allowed"; else echo "host mount write: refused"; fi
if [ -d /opt/shared ]; then echo "shared mount: present"; else echo "shared mount: absent"; fi
case "$mode" in
  fail) echo "failing on purpose"; exit 1 ;;
  big) dd if=/dev/zero of=/root/.cache/x/big bs=1M count=8 2>&1 || echo "dd stopped" ;;
  slow) : > "/root/.cache/x/mine-$AUTOBUILDER_REF_NAME"; sleep 3; ls /root/.cache/x > /tmp/out/result.txt ;;
esac
`;

const definition = (extra = '') => `autobuild/cache.sh:\n  archives: /tmp/out\n  artifact: result.txt\n  caches: [/root/.cache/x]\n${extra}`;

/** A config repository for acme/widget: every branch runs the cache build; branch `capped` caps its cache at 4 MiB. */
async function makeConfigRepository(dir: string): Promise<string> {
  const config = join(dir, 'config');
  await mkdir(join(config, 'acme', 'widget'), { recursive: true });
  await writeFile(join(config, 'acme', 'widget', 'any.yaml'), `on: { branches: ['**'] }\nbuildscripts: [autobuild/cache.sh]\n${definition()}`);
  await writeFile(join(config, 'acme', 'widget', 'capped.yaml'), `buildscripts: [autobuild/cache.sh]\n${definition('  resources: { cacheMiB: 4 }\n')}`);
  return config;
}

/** Helpers over one fixture server running the cache build. */
function cacheBuilds(f: () => FixtureServer) {
  let nonce = 0;
  /** Commits `mode` with a tree of its own (an identical tree would be a cache hit). */
  const commit = (mode: string) => f().repo.commit({ 'mode.txt': `${mode}\n`, 'nonce.txt': `${++nonce} ${Date.now()}\n` }, `${mode} ${nonce}`);
  const push = async (ref: string, sha: string) => {
    const response = await deliver(f().server.url, {
      event: 'push',
      secret: f().secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref, sha, cloneUrl: f().cloneUrl }),
    });
    assert.equal(response.status, 202, JSON.stringify(response.body));
  };
  const build = async (branch: string, mode = 'ok'): Promise<BuildView> => {
    const sha = await commit(mode);
    await push(`refs/heads/${branch}`, sha);
    return f().waitForBuild((b) => b.sha === sha && b.ref === `refs/heads/${branch}`);
  };
  /** What the build's cache held when it started (its artifact). */
  const seen = async (b: BuildView): Promise<string> => {
    assert.equal(b.state, 'success', b.description ?? '');
    return (await fetch(b.artifacts[0]?.url ?? '')).text();
  };
  const logOf = async (b: BuildView) => (await fetch(b.logUrl)).text();
  return { commit, push, build, seen, logOf };
}

/** Every cache directory under `<dataDir>/caches` with what it holds besides its head link. */
async function cacheDirs(dataDir: string): Promise<{ dir: string; head: string | null; snapshots: string[] }[]> {
  const out: { dir: string; head: string | null; snapshots: string[] }[] = [];
  const root = join(dataDir, 'caches', 'acme', 'widget');
  for (const scope of await readdir(root).catch(() => [])) {
    for (const cache of await readdir(join(root, scope), { withFileTypes: true })) {
      if (!cache.isDirectory()) continue;
      const dir = join(root, scope, cache.name);
      const entries = await readdir(dir);
      out.push({ dir, head: entries.includes('head') ? await readlink(join(dir, 'head')) : null, snapshots: entries.filter((e) => e !== 'head').sort() });
    }
  }
  return out;
}

describe('persistent caches and host mounts (Btrfs, real Docker)', () => {
  let f: FixtureServer;
  let hostTools: string;
  let shared: string;
  const b = cacheBuilds(() => f);
  let main: BuildView;
  let topic: BuildView;
  let forkBuild: BuildView;

  before(async () => {
    const dir = await makeTestDir('caches-config');
    hostTools = join(dir, 'host-tools');
    shared = join(dir, 'shared');
    await mkdir(hostTools);
    await mkdir(shared);
    await writeFile(join(hostTools, 'hello.txt'), 'hello from the host');
    f = await startFixtureServer('caches', {
      snapshotDriver: 'btrfs',
      jobConcurrency: 2,
      configRepository: { path: await makeConfigRepository(dir) },
      builds: {
        mounts: [
          { host: hostTools, container: '/opt/host-tools' },
          { host: shared, container: '/opt/shared', forks: true },
        ],
      },
      retention: { deadRefHeadSeconds: 3 },
    });
    await f.repo.commit({ 'autobuild/cache.sh': SCRIPT }, 'the cache build');
  });
  after(async () => {
    await f.close({ graceMs: 0 });
  });

  test('a cache persists across builds of two branches of one repository', async () => {
    main = await b.build('main');
    assert.equal(await b.seen(main), '', 'the first build starts with an empty cache');
    assert.match(await b.logOf(main), /\[autobuilder\] cache \/root\/\.cache\/x: empty \(cap 2048 MiB, a Btrfs qgroup limit\)/);
    assert.match(await b.logOf(main), /\[autobuilder\] cache \/root\/\.cache\/x: promoted \(/);
    topic = await b.build('topic');
    assert.equal(await b.seen(topic), 'main\n', "a new branch starts from the repository's cache");
    assert.match(await b.logOf(topic), new RegExp(`cache /root/\\.cache/x: snapshot of build ${main.id}'s`));
  });

  test('a host mount is visible read-only: a write to it fails', async () => {
    const log = await b.logOf(main);
    assert.match(log, new RegExp(`\\[autobuilder\\] host mount ${hostTools} at /opt/host-tools \\(read-only\\)`));
    assert.match(log, /^host mount: hello from the host$/m);
    assert.match(log, /^host mount write: refused$/m);
    assert.match(log, /^shared mount: present$/m);
    assert.equal(existsSync(join(hostTools, 'written')), false);
  });

  test('a failing build leaves the cache unchanged', async () => {
    const failed = await b.build('broken', 'fail');
    assert.equal(failed.state, 'failure', failed.description ?? '');
    const log = await b.logOf(failed);
    assert.match(log, /failing on purpose/);
    assert.match(log, /\[autobuilder\] caches unchanged: the build did not succeed/);
    const next = await b.build('main');
    assert.equal(await b.seen(next), 'main\ntopic\n', 'what the failed build appended is gone');
  });

  test('two concurrent builds each see their own snapshot', async () => {
    const left = await b.commit('slow');
    const right = await b.commit('slow');
    await Promise.all([b.push('refs/heads/left', left), b.push('refs/heads/right', right)]);
    const [l, r] = await Promise.all([
      f.waitForBuild((x) => x.sha === left && x.ref === 'refs/heads/left'),
      f.waitForBuild((x) => x.sha === right && x.ref === 'refs/heads/right'),
    ]);
    assert.ok(l.startedAt !== null && r.startedAt !== null && l.finishedAt !== null && r.finishedAt !== null);
    assert.ok(
      Date.parse(l.startedAt) < Date.parse(r.finishedAt) && Date.parse(r.startedAt) < Date.parse(l.finishedAt),
      `the two builds overlapped: ${JSON.stringify([l.startedAt, l.finishedAt, r.startedAt, r.finishedAt])}`,
    );
    assert.deepEqual((await b.seen(l)).split('\n').filter(Boolean), ['log', 'mine-left']);
    assert.deepEqual((await b.seen(r)).split('\n').filter(Boolean), ['log', 'mine-right']);
    // one of them is the head now: the newer build's snapshot (build ids sort by age)
    const newer = l.id > r.id ? 'left' : 'right';
    const after = await b.build('main');
    assert.match(await b.seen(after), new RegExp(`^main\\ntopic\\nmain\\n${newer}\\n$`));
  });

  test('a cache over its cap is not promoted, and the build log says so', async () => {
    const capped = await b.build('capped', 'big');
    assert.equal(capped.state, 'success', capped.description ?? '');
    const log = await b.logOf(capped);
    assert.match(log, /cache \/root\/\.cache\/x: snapshot of build .* \(cap 4 MiB, a Btrfs qgroup limit\)/);
    assert.match(log, /dd stopped|Disk quota exceeded/, 'the qgroup stopped the write');
    assert.match(
      log,
      /\[autobuilder\] cache \/root\/\.cache\/x: not promoted: it holds [\d.]+ MiB, over its cap of 4 MiB \(builds\.cacheMaxMiB, resources\.cacheMiB\)/,
    );
    const next = await b.build('main');
    assert.doesNotMatch(await b.seen(next), /capped/);
  });

  test("a fork's pull request gets its own empty cache, never the repository's, and only the mounts marked forks: true", async () => {
    const git = simpleGit({ baseDir: f.repo.dir });
    const pullRequest = async (sha: string, action: string) => {
      await git.raw(['update-ref', 'refs/pull/9/head', sha]);
      const response = await deliver(f.server.url, {
        event: 'pull_request',
        secret: f.secret,
        payload: pullRequestPayload({
          owner: 'acme',
          repo: 'widget',
          action,
          number: 9,
          head: 'main',
          sha,
          base: 'main',
          fork: 'mallory/widget',
          cloneUrl: f.cloneUrl,
        }),
      });
      assert.equal(response.status, 202, JSON.stringify(response.body));
      return f.waitForBuild((x) => x.sha === sha && x.ref === 'refs/pull/9/head');
    };
    forkBuild = await pullRequest(await b.commit('ok'), 'opened');
    assert.equal(await b.seen(forkBuild), '', "the repository's cache never reaches a fork's build");
    const log = await b.logOf(forkBuild);
    assert.match(log, /cache \/root\/\.cache\/x: empty: a fork's build never reads the repository's caches \(pull request #9's own cache\)/);
    assert.match(log, /^host mount: absent$/m);
    assert.match(log, /^shared mount: present$/m);
    assert.match(log, /\[autobuilder\] host mounts: 1 left out \(a fork's build gets only those with forks: true\)/);
    assert.match(log, /cache \/root\/\.cache\/x: promoted \(pull request #9's own cache\)/);

    const again = await pullRequest(await b.commit('ok'), 'synchronize');
    assert.equal(await b.seen(again), '9\n', 'its own pull request keeps its cache');
    forkBuild = again;
    const next = await b.build('main');
    assert.doesNotMatch(await b.seen(next), /^9$/m, "the fork's success never changes the repository's cache");
  });

  test('no build leaves a cache snapshot behind: each cache holds its head alone', async () => {
    const dirs = await cacheDirs(join(f.dir, 'data'));
    assert.deepEqual(dirs.map((d) => d.dir.split('/').slice(-2).join('/')).sort(), ['pull-9/root+.cache+x', 'repository/root+.cache+x']);
    for (const d of dirs) {
      assert.ok(d.head !== null, d.dir);
      assert.deepEqual(d.snapshots, [d.head], d.dir);
    }
  });

  test('retention removes the cache of a pull request not built for retention.deadRefHeadSeconds', async () => {
    assert.ok(forkBuild.finishedAt !== null);
    const wait = Date.parse(forkBuild.finishedAt) + 3500 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    // the repository is built meanwhile: its cache is in use
    await b.build('main');
    const report = await f.server.retention.run();
    assert.equal(report.cacheScopesDeleted, 1);
    assert.equal(existsSync(join(f.dir, 'data', 'caches', 'acme', 'widget', 'pull-9')), false);
    assert.ok(existsSync(join(f.dir, 'data', 'caches', 'acme', 'widget', 'repository', 'root+.cache+x', 'head')));
  });
});

describe('persistent caches over the copy driver', () => {
  let f: FixtureServer;
  const b = cacheBuilds(() => f);

  before(async () => {
    const dir = await makeTestDir('caches-copy-config');
    f = await startFixtureServer('caches-copy', { snapshotDriver: 'copy', configRepository: { path: await makeConfigRepository(dir) } });
    await f.repo.commit({ 'autobuild/cache.sh': SCRIPT }, 'the cache build');
  });
  after(async () => {
    await f.close({ graceMs: 0 });
  });

  test('a cache persists across builds of two branches, checked at promotion', async () => {
    const main = await b.build('main');
    assert.equal(await b.seen(main), '');
    assert.match(await b.logOf(main), /cache \/root\/\.cache\/x: empty \(cap 2048 MiB, checked at promotion\)/);
    const topic = await b.build('topic');
    assert.equal(await b.seen(topic), 'main\n');
  });

  test('a failing build leaves the cache unchanged', async () => {
    const failed = await b.build('broken', 'fail');
    assert.equal(failed.state, 'failure', failed.description ?? '');
    const next = await b.build('main');
    assert.equal(await b.seen(next), 'main\ntopic\n');
    const dirs = await cacheDirs(join(f.dir, 'data'));
    assert.equal(dirs.length, 1);
    assert.deepEqual(dirs[0]?.snapshots, [dirs[0]?.head]);
  });
});
