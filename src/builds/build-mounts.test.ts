import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseDefinitionFile } from '../config-repo/definition.js';
import type { HostMount } from '../config/host-mount.js';
import { createLogger } from '../logger.js';
import type { CacheOutcome, Caches, PreparedCache } from '../snapshots/caches.js';
import { openBuildMounts, toCacheScope } from './build-mounts.js';
import type { BuildRequest } from './build-request.js';
import { createCacheKeyReader } from './read-cache-key.js';
import { parseBuildRef } from './refs.js';

const MiB = 1024 * 1024;
const log = createLogger({ level: 'silent' });
const definitionWith = (options: string) =>
  parseDefinitionFile(`buildscripts: [b.sh]\nb.sh:\n  archives: /out\n  artifact: x\n${options}`, 'acme/widget/main.yaml')[0] as NonNullable<
    ReturnType<typeof parseDefinitionFile>[0]
  >;
const request = (fork: boolean): Pick<BuildRequest, 'owner' | 'repo' | 'fromFork' | 'pullRequest'> =>
  fork ? { owner: 'acme', repo: 'widget', fromFork: true, pullRequest: 7 } : { owner: 'acme', repo: 'widget' };
const mounts: HostMount[] = [
  { host: '/opt/sdk', container: '/opt/sdk', readOnly: true, forks: false },
  { host: '/srv/ca.crt', container: '/etc/ssl/ca.crt', readOnly: true, forks: true },
  { host: '/srv/out', container: '/out-dir', readOnly: false, forks: false },
];

/** Caches that record what they are asked and answer as `promoted` says. */
function recordingCaches(outcome: CacheOutcome['result'] = 'promoted') {
  const calls: string[] = [];
  const caches: Caches = {
    async prepare({ scope, paths, capBytes, buildId }) {
      calls.push(`prepare ${scope.kind === 'pull' ? `pull-${scope.number}` : 'repository'} ${paths.join(',')} ${capBytes}`);
      return paths.map((path): PreparedCache => ({
        path,
        hostPath: `/data/caches/${buildId}${path}`,
        parentBuildId: null,
        droppedHeadBytes: null,
        capBytes,
        enforcedBy: 'qgroup',
      }));
    },
    async promote({ caches: prepared }) {
      calls.push(`promote ${prepared.map((c) => c.path).join(',')}`);
      return prepared.map((c): CacheOutcome => {
        switch (outcome) {
          case 'promoted':
            return { path: c.path, result: 'promoted', bytes: 3 * MiB };
          case 'over-cap':
            return { path: c.path, result: 'over-cap', bytes: 9 * MiB, capBytes: c.capBytes };
          case 'superseded':
            return { path: c.path, result: 'superseded', headBuildId: 'b2' };
          case 'failed':
            return { path: c.path, result: 'failed', reason: 'disk gone' };
          default: {
            const unreachable: never = outcome;
            return unreachable;
          }
        }
      });
    },
    async discard(prepared) {
      calls.push(`discard ${prepared.map((c) => c.path).join(',')}`);
    },
    recover: async () => 0,
    collect: async () => ({ scopesRemoved: 0, snapshotsRemoved: 0 }),
  };
  return { caches, calls };
}

function open(input: { fork?: boolean; options?: string; caches?: Caches; cacheMaxBytes?: number; hostMounts?: HostMount[] }) {
  const lines: string[] = [];
  const fork = input.fork ?? false;
  const promise = openBuildMounts({
    caches: input.caches,
    cacheMaxBytes: input.cacheMaxBytes ?? 64 * MiB,
    hostMounts: input.hostMounts ?? mounts,
    definition: definitionWith(input.options ?? '  caches: [/root/.npm]\n'),
    request: request(fork),
    ref: parseBuildRef(fork ? 'refs/pull/7/head' : 'refs/heads/main'),
    buildId: 'b1',
    buildLog: { line: (text: string) => void lines.push(text) },
    log,
  });
  return { promise, lines };
}

describe('a build’s mounts', () => {
  test('the scope of caches: the repository, or a fork’s pull request, none for a fork without one', () => {
    assert.deepEqual(toCacheScope({}, parseBuildRef('refs/heads/main')), { kind: 'repository' });
    assert.deepEqual(toCacheScope({ pullRequest: 3 }, parseBuildRef('refs/pull/3/head')), { kind: 'repository' });
    assert.deepEqual(toCacheScope({ fromFork: true, pullRequest: 3 }, parseBuildRef('refs/pull/3/head')), { kind: 'pull', number: 3 });
    assert.equal(toCacheScope({ fromFork: true }, parseBuildRef('refs/heads/x')), null);
  });

  test('caches first (read-write), then every host mount as configured; a success promotes, and the end then changes nothing', async () => {
    const { caches, calls } = recordingCaches();
    const { promise, lines } = open({ caches, options: '  caches: [/root/.npm, /root/.ccache]\n  resources: { cacheMiB: 16 }\n' });
    const built = await promise;
    assert.deepEqual(built.binds, [
      { source: '/data/caches/b1/root/.npm', target: '/root/.npm', readOnly: false },
      { source: '/data/caches/b1/root/.ccache', target: '/root/.ccache', readOnly: false },
      { source: '/opt/sdk', target: '/opt/sdk', readOnly: true },
      { source: '/srv/ca.crt', target: '/etc/ssl/ca.crt', readOnly: true },
      { source: '/srv/out', target: '/out-dir', readOnly: false },
    ]);
    assert.deepEqual(calls, ['prepare repository /root/.npm,/root/.ccache 16777216']);
    await built.promote();
    await built.release();
    assert.deepEqual(calls.slice(1), ['promote /root/.npm,/root/.ccache']);
    assert.ok(lines.includes('[autobuilder] host mount /srv/out at /out-dir (writable)'), lines.join('\n'));
    assert.ok(lines.includes('[autobuilder] cache /root/.npm: empty (cap 16 MiB, a Btrfs qgroup limit)'), lines.join('\n'));
    assert.ok(lines.includes('[autobuilder] cache /root/.ccache: promoted (3 MiB)'), lines.join('\n'));
  });

  test('a definition may not ask for more than the server’s cap', async () => {
    const { caches, calls } = recordingCaches();
    await open({ caches, options: '  caches: [/root/.npm]\n  resources: { cacheMiB: 4096 }\n', cacheMaxBytes: 8 * MiB }).promise;
    assert.deepEqual(calls, [`prepare repository /root/.npm ${8 * MiB}`]);
  });

  test('a build that did not succeed discards its snapshots and says the caches are unchanged', async () => {
    const { caches, calls } = recordingCaches();
    const { promise, lines } = open({ caches });
    const built = await promise;
    await built.release();
    await built.release();
    assert.deepEqual(calls, [`prepare repository /root/.npm ${64 * MiB}`, 'discard /root/.npm']);
    assert.equal(lines.filter((l) => l === '[autobuilder] caches unchanged: the build did not succeed').length, 1);
  });

  test('a fork’s build gets its pull request’s caches and only the host mounts marked forks', async () => {
    const { caches, calls } = recordingCaches('over-cap');
    const { promise, lines } = open({ caches, fork: true });
    const built = await promise;
    assert.deepEqual(
      built.binds.map((b) => b.target),
      ['/root/.npm', '/etc/ssl/ca.crt'],
    );
    assert.deepEqual(calls, [`prepare pull-7 /root/.npm ${64 * MiB}`]);
    assert.ok(lines.includes("[autobuilder] host mounts: 2 left out (a fork's build gets only those with forks: true)"), lines.join('\n'));
    await built.promote();
    assert.match(lines.at(-1) ?? '', /cache \/root\/\.npm: not promoted: it holds 9 MiB, over its cap of 64 MiB/);
  });

  test('a cache path over a host mount ends the build before anything is made', async () => {
    const { caches, calls } = recordingCaches();
    await assert.rejects(open({ caches, options: '  caches: [/opt/sdk/cache]\n' }).promise, {
      code: 'CONFIG_INVALID',
      message: /cache \/opt\/sdk\/cache of b\.sh overlaps the host mount at \/opt\/sdk/,
    });
    assert.deepEqual(calls, []);
    // a fork's build does not get that mount, so nothing overlaps
    assert.equal((await open({ caches, options: '  caches: [/opt/sdk/cache]\n', fork: true }).promise).binds[0]?.target, '/opt/sdk/cache');
  });

  test('cacheMaxBytes 0 turns caches off; the build runs without them', async () => {
    const { caches, calls } = recordingCaches();
    const { promise, lines } = open({ caches, cacheMaxBytes: 0, hostMounts: [] });
    assert.deepEqual((await promise).binds, []);
    assert.deepEqual(calls, []);
    assert.ok(lines.includes('[autobuilder] caches: off (builds.cacheMaxMiB is 0)'));
  });
});

describe('caches and the cache key', () => {
  test('a definition’s caches do not change its cache key: a cache must not change what a build produces', async () => {
    const read = createCacheKeyReader({
      checkout: {
        inspectTree: async () => ['d'.repeat(40)],
      } as unknown as Parameters<typeof createCacheKeyReader>[0]['checkout'],
      runner: { imageId: async () => `sha256:${'e'.repeat(64)}` },
      defaultImage: 'autobuilder/busybox:latest',
      cloneUrlRewrites: [],
    });
    const build = { repo: 'acme/widget', ref: 'refs/heads/main', sha: 'a'.repeat(40), params: {}, configSha: null };
    const req: BuildRequest = {
      owner: 'acme',
      repo: 'widget',
      ref: 'refs/heads/main',
      sha: build.sha,
      tree: 'b'.repeat(40),
      cloneUrl: 'x',
      defaultBranch: 'main',
      deliveryId: null,
    };
    const signal = new AbortController().signal;
    const without = await read(build, definitionWith(''), req, signal);
    const withCaches = await read(build, definitionWith('  caches: [/root/.npm, /root/.ccache]\n  resources: { cacheMiB: 64 }\n'), req, signal);
    assert.equal(withCaches.cacheKey, without.cacheKey);
    assert.deepEqual(withCaches.cacheInputs, without.cacheInputs);
  });
});
