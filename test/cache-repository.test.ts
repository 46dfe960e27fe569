import assert from 'node:assert/strict';
import { cp, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeTestDir } from './support/data-dir.js';
import { createGitRepository, type GitRepository } from './support/git-repository.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

const FIXTURE_CONFIG = resolve(import.meta.dirname, 'fixtures', 'config-repo');

describe('the build cache is per repository', () => {
  let f: FixtureServer;
  let source: GitRepository & { head: string | null };
  const twinUrl = 'https://github.com/other-org/twin.git';

  before(async () => {
    // the fixture's definitions plus the same main.yaml for a second repository
    const dir = await makeTestDir('cache-repository-repos');
    const config = join(dir, 'config-repo');
    await cp(FIXTURE_CONFIG, config, { recursive: true });
    await mkdir(join(config, 'other-org', 'twin'), { recursive: true });
    await cp(join(FIXTURE_CONFIG, 'acme', 'widget', 'main.yaml'), join(config, 'other-org', 'twin', 'main.yaml'));
    // one git repository behind both clone URLs: identical trees and commits
    source = await createGitRepository(join(dir, 'source'), join(import.meta.dirname, 'fixtures', 'projects', 'widget'));
    f = await startFixtureServer('cache-repository', {
      configRepository: { path: config },
      cloneUrlRewrites: [
        { from: 'https://github.com/acme/widget.git', to: source.url },
        { from: twinUrl, to: source.url },
      ],
    });
  });
  after(async () => {
    await f.close();
  });

  test('a repository whose tree and definition equal another’s builds its own result, never the other’s cached one', async () => {
    const sha = source.head as string;
    const tree = await source.treeOf(sha);
    const push = async (owner: string, repo: string, cloneUrl: string) => {
      const response = await deliver(f.server.url, {
        event: 'push',
        secret: f.secret,
        payload: pushPayload({ owner, repo, ref: 'refs/heads/main', sha, tree, cloneUrl }),
      });
      assert.equal(response.status, 202, JSON.stringify(response.body));
    };
    await push('acme', 'widget', f.cloneUrl);
    const first = await f.waitForBuild((b) => b.sha === sha);
    assert.equal(first.state, 'success', first.description ?? '');
    assert.equal(first.cached, false);

    await push('other-org', 'twin', twinUrl);
    const twin = await waitFor(f, 'other-org/twin', sha);
    assert.equal(twin.state, 'success', twin.description ?? '');
    assert.equal(twin.cached, false, `answered from build ${twin.sourceBuildId ?? '?'}: ${twin.description ?? ''}`);
    assert.equal(twin.coalesced, false);
    assert.notEqual(twin.cacheKey, first.cacheKey);
    assert.equal(twin.cacheInputs?.tree, first.cacheInputs?.tree, 'the trees are the same: only the repository differs');
  });
});

/** Polls the API until the build of `repo` at `sha` has ended. */
async function waitFor(f: FixtureServer, repo: string, sha: string) {
  for (let i = 0; i < 600; i++) {
    const response = await fetch(`${f.server.url}/api/builds?repo=${repo}`);
    const found = ((await response.json()) as { builds: Awaited<ReturnType<FixtureServer['waitForBuild']>>[] }).builds.find((b) => b.sha === sha);
    if (found !== undefined && found.state !== 'queued' && found.state !== 'running') return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no finished build of ${repo} at ${sha}`);
}
