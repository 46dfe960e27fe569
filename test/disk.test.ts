import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BuildView } from '../src/http/build-view.js';
import { createBtrfsDriver, isBtrfs } from '../src/snapshots/index.js';
import { makeTestDir } from './support/data-dir.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

const MiB = 1024 * 1024;

/** Writes a local config repository with one definition file per branch: `<branch>.yaml` → YAML text. */
async function makeConfigRepository(name: string, files: Record<string, string>): Promise<string> {
  const dir = join(await makeTestDir(name), 'config');
  await mkdir(join(dir, 'acme', 'widget'), { recursive: true });
  for (const [branch, yaml] of Object.entries(files)) await writeFile(join(dir, 'acme', 'widget', `${branch}.yaml`), yaml);
  return dir;
}

const definition = (script: string, extra = '') => `buildscripts:\n  - ${script}\n${script}:\n  archives: /workspace/out\n  artifact: result.bin\n${extra}`;

/** Every regular file under `dir` (relative paths); none when it does not exist. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

async function push(f: FixtureServer, ref: string, sha: string): Promise<void> {
  const response = await deliver(f.server.url, {
    event: 'push',
    secret: f.secret,
    payload: pushPayload({ owner: 'acme', repo: 'widget', ref, sha, cloneUrl: f.cloneUrl }),
  });
  assert.equal(response.status, 202, JSON.stringify(response.body));
}

async function buildOf(f: FixtureServer, sha: string, ref: string): Promise<BuildView | undefined> {
  return (await f.builds()).find((b) => b.sha === sha && b.ref === ref);
}

/** Polls until the build of `sha` on `ref` exists and `match` holds, or fails after `timeoutMs`. */
async function waitUntil(f: FixtureServer, sha: string, ref: string, match: (b: BuildView) => boolean, timeoutMs = 20_000): Promise<BuildView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const build = await buildOf(f, sha, ref);
    if (build !== undefined && match(build)) return build;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms; last seen: ${JSON.stringify(build ?? null)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('Btrfs workspace quotas (real volume)', () => {
  test('a snapshot may add only its exclusive limit, whatever the size of what it shares', async (t) => {
    const dir = await makeTestDir('quota-driver');
    if (!(await isBtrfs(dir))) return t.skip('the data dir is not on Btrfs: run scripts/host-setup.sh');
    const driver = createBtrfsDriver();
    const quota = driver.quota;
    assert.ok(quota);
    await quota.enable(dir);
    try {
      await driver.create(join(dir, 'head'));
      // 32 MiB in the lineage head: a limit on referenced bytes would already be over 16 MiB
      await writeFile(join(dir, 'head', 'inherited.bin'), Buffer.alloc(32 * MiB, 1));
      await driver.snapshot(join(dir, 'head'), join(dir, 'child'));
      await quota.limit(join(dir, 'child'), 16 * MiB);
      const fresh = await quota.usage(join(dir, 'child'));
      assert.equal(fresh.limitBytes, 16 * MiB);
      assert.ok(fresh.exclusiveBytes < MiB, `a new snapshot owns almost nothing, not ${fresh.exclusiveBytes}`);

      await writeFile(join(dir, 'child', 'small.bin'), Buffer.alloc(8 * MiB, 2));
      // EDQUOT (122); libuv has no name for it
      await assert.rejects(writeFile(join(dir, 'child', 'big.bin'), Buffer.alloc(16 * MiB, 3)), { errno: -122 });
      const full = await quota.usage(join(dir, 'child'));
      assert.ok(full.exclusiveBytes > 15 * MiB && full.exclusiveBytes <= 16 * MiB, `usage ${full.exclusiveBytes} is at the limit`);

      // a snapshot inherits its source's limit: lifting it must be possible
      await driver.snapshot(join(dir, 'child'), join(dir, 'grandchild'));
      assert.equal((await quota.usage(join(dir, 'grandchild'))).limitBytes, 16 * MiB);
      await quota.limit(join(dir, 'grandchild'), null);
      assert.equal((await quota.usage(join(dir, 'grandchild'))).limitBytes, null);
    } finally {
      for (const name of ['grandchild', 'child', 'head']) await driver.remove(join(dir, name));
    }
  });
});

describe('a build cannot fill the disk the server needs', () => {
  let f: FixtureServer;

  before(async () => {
    const configDir = await makeConfigRepository('disk-config', {
      // writes 64 MiB into its workspace, asks for 16 MiB of quota
      fill: definition('autobuild/fill.sh', '  resources: { diskMiB: 16 }\n'),
      // asks for far more than the server allows: capped to builds.diskQuotaMiB
      greedy: definition('autobuild/greedy.sh', '  resources: { diskMiB: 1000000 }\n'),
      // an artifact of 3 MiB, over the 2 MiB cap
      'big-artifact': definition('autobuild/big-artifact.sh'),
      main: definition('autobuild/small.sh'),
    });
    f = await startFixtureServer('disk', {
      snapshotDriver: 'btrfs',
      configRepository: { path: configDir },
      builds: { diskQuotaMiB: 64, maxArtifactBytes: 2 * MiB },
    });
    await f.repo.commit(
      {
        'autobuild/fill.sh': '#!/bin/sh\nset -eu\nmkdir -p out\ndd if=/dev/zero of=fill.bin bs=1M count=64\necho done > out/result.bin\n',
        'autobuild/small.sh': '#!/bin/sh\nset -eu\nmkdir -p out\ndd if=/dev/zero of=out/result.bin bs=1k count=4\n',
        'autobuild/greedy.sh': '#!/bin/sh\nset -eu\nmkdir -p out\necho greedy > out/result.bin\n',
        'autobuild/big-artifact.sh': '#!/bin/sh\nset -eu\nmkdir -p out\ndd if=/dev/zero of=out/result.bin bs=1M count=3\n',
      },
      'disk test scripts',
    );
  });
  after(async () => {
    await f.close({ graceMs: 0 });
  });

  test('an artifact over builds.maxArtifactBytes ends the build failure naming the cap; nothing is stored', async () => {
    const sha = await f.repo.commitEmpty('big artifact');
    await push(f, 'refs/heads/big-artifact', sha);
    const build = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/big-artifact');
    assert.equal(build.state, 'failure', build.description ?? '');
    assert.equal(build.exitCode, 0);
    assert.match(build.description ?? '', /^artifact larger than 2097152 bytes \(builds\.maxArtifactBytes\): \/workspace\/out\/result\.bin has 3145728/);
    assert.deepEqual(build.artifacts, []);
    assert.deepEqual(await filesUnder(join(f.dir, 'data', 'artifacts')), [], 'no artifact and no partial copy left');
  });

  test('a build that writes past its quota ends failure "disk quota exceeded"; webhooks are still answered 202', async () => {
    const sha = await f.repo.commitEmpty('fill the disk');
    await push(f, 'refs/heads/fill', sha);
    const build = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/fill');
    assert.equal(build.state, 'failure', build.description ?? '');
    assert.notEqual(build.exitCode, 0);
    assert.match(build.description ?? '', /^disk quota exceeded/);
    const log = await (await fetch(build.logUrl)).text();
    assert.match(log, /disk quota: the build may add 16 MiB to its workspace/);
    assert.match(log, /Disk quota exceeded/, 'dd saw EDQUOT');

    // the server is unharmed: a signed webhook is taken and its build runs
    const next = await f.repo.commitEmpty('after the full one');
    await push(f, 'refs/heads/main', next);
    const ok = await f.waitForBuild((b) => b.sha === next && b.ref === 'refs/heads/main');
    assert.equal(ok.state, 'success', ok.description ?? '');
  });

  test("a definition's resources.diskMiB is capped by builds.diskQuotaMiB", async () => {
    const sha = await f.repo.commitEmpty('greedy');
    await push(f, 'refs/heads/greedy', sha);
    const build = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/greedy');
    assert.equal(build.state, 'success', build.description ?? '');
    assert.match(await (await fetch(build.logUrl)).text(), /disk quota: the build may add 64 MiB to its workspace/);
  });
});

describe('the copy driver runs builds without a quota and says so', () => {
  test('the build log names why no quota is enforced; the build succeeds', async () => {
    const configDir = await makeConfigRepository('disk-copy-config', { main: definition('autobuild/small.sh', '  resources: { diskMiB: 1 }\n') });
    const f = await startFixtureServer('disk-copy', { snapshotDriver: 'copy', configRepository: { path: configDir } });
    try {
      const sha = await f.repo.commit({ 'autobuild/small.sh': '#!/bin/sh\nset -eu\nmkdir -p out\ndd if=/dev/zero of=out/result.bin bs=1M count=2\n' }, 'small');
      await push(f, 'refs/heads/main', sha);
      const build = await f.waitForBuild((b) => b.sha === sha);
      assert.equal(build.state, 'success', build.description ?? '');
      assert.match(await (await fetch(build.logUrl)).text(), /disk quota: not enforced \(the copy snapshot driver cannot enforce disk quotas\)/);
    } finally {
      await f.close({ graceMs: 0 });
    }
  });
});

describe('the free-space reserve of the data volume', () => {
  test('under the reserve (real statfs) a pushed build stays queued with the reason; webhooks get 202; a normal reserve lets it run', async () => {
    const f = await startFixtureServer('disk-reserve', { builds: { diskReserveMiB: 10_000_000 } });
    try {
      const sha = f.repo.head as string;
      await push(f, 'refs/heads/main', sha);
      const queued = await waitUntil(f, sha, 'refs/heads/main', (b) => /^Queued: data volume/.test(b.description ?? ''));
      assert.match(queued.description ?? '', /^Queued: data volume has \d+ MiB free, under the 10000000 MiB reserve$/);
      // still queued a while later: nothing starts it
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await buildOf(f, sha, 'refs/heads/main'))?.state, 'queued');
      const queue = (await (await fetch(`${f.server.url}/api/queue`)).json().catch(() => null)) as { waiting?: { reason: string }[] } | null;
      if (queue?.waiting !== undefined) assert.match(queue.waiting[0]?.reason ?? '', /under the 10000000 MiB reserve/);
      // intake does not depend on the reserve
      const other = await f.repo.commit({ 'message.txt': 'pushed while the volume is short\n' }, 'another push while the volume is short');
      await push(f, 'refs/heads/main', other);
      await waitUntil(f, other, 'refs/heads/main', (b) => b.state === 'queued' && /^Queued: data volume/.test(b.description ?? ''));

      await f.restart({ builds: { diskReserveMiB: 1 } });
      const built = await f.waitForBuild((b) => b.sha === other && b.ref === 'refs/heads/main');
      assert.equal(built.state, 'success', built.description ?? '');
    } finally {
      await f.close({ graceMs: 0 });
    }
  });

  test('builds wait while the free space is under the reserve and start by themselves once it is over again', async () => {
    let free = 100 * MiB;
    const f = await startFixtureServer('disk-reserve-live', { builds: { diskReserveMiB: 2048 } }, { freeBytes: () => Promise.resolve(free) });
    try {
      const sha = f.repo.head as string;
      await push(f, 'refs/heads/main', sha);
      const queued = await waitUntil(f, sha, 'refs/heads/main', (b) => /^Queued: data volume/.test(b.description ?? ''));
      assert.equal(queued.description, 'Queued: data volume has 100 MiB free, under the 2048 MiB reserve');
      free = 4096 * MiB;
      // re-read every 10 s
      const built = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/main', 30_000);
      assert.equal(built.state, 'success', built.description ?? '');
    } finally {
      await f.close({ graceMs: 0 });
    }
  });

  test('under half the reserve, running builds are stopped (error, the reason named) and webhooks are still answered', async () => {
    let free = 4096 * MiB;
    const f = await startFixtureServer('disk-critical', { builds: { diskReserveMiB: 2048 } }, { freeBytes: () => Promise.resolve(free) });
    try {
      const sha = f.repo.head as string;
      await push(f, 'refs/heads/long', sha); // sleeps for a minute
      await waitUntil(f, sha, 'refs/heads/long', (b) => b.state === 'running');
      free = 512 * MiB;
      // read every 2 s
      const stopped = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/long', 15_000);
      assert.equal(stopped.state, 'error');
      assert.equal(stopped.description, 'stopped: the data volume has 512 MiB free, under half its 2048 MiB reserve');
      await push(f, 'refs/heads/main', sha);
    } finally {
      await f.close({ graceMs: 0 });
    }
  });
});
