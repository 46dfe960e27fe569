import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Build } from '../src/builds/build.js';
import { createBuildId } from '../src/builds/coordinator.js';
import type { BuildView } from '../src/http/build-view.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

/** A stored build made from `template` (a real build) with other values: history and badge fixtures. */
function fakeBuild(template: Build, changes: Partial<Build>): Build {
  return { ...structuredClone(template), id: createBuildId(), ...changes };
}

describe('history and status API, badges', () => {
  let f: FixtureServer;
  let template: Build;
  before(async () => {
    f = await startFixtureServer('history');
    const sha = f.repo.head as string;
    await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl: f.cloneUrl }),
    });
    const real = await f.waitForBuild((b) => b.sha === sha);
    template = f.server.store.get(real.id) as Build;
  });
  after(async () => {
    await f.close();
  });

  const get = async <T>(path: string): Promise<{ status: number; body: T; headers: Headers }> => {
    const response = await fetch(`${f.server.url}${path}`);
    return { status: response.status, headers: response.headers, body: (await response.json()) as T };
  };

  test('GET /api/builds pages through the history with a cursor, each build once, newest first', async () => {
    for (let i = 0; i < 11; i++) {
      f.server.store.insert(
        fakeBuild(template, {
          ref: i % 2 === 0 ? 'refs/heads/main' : 'refs/heads/dev',
          state: i % 3 === 0 ? 'failure' : 'success',
          queuedAt: new Date(Date.now() + i).toISOString(),
        }),
      );
      await new Promise((r) => setTimeout(r, 2));
    }
    const all = (await get<{ builds: BuildView[] }>('/api/builds?repo=acme/widget&limit=500')).body.builds;
    assert.equal(all.length, 12);
    const seen: string[] = [];
    let path: string | null = '/api/builds?repo=acme/widget&limit=5';
    let pages = 0;
    while (path !== null) {
      const page: { status: number; body: { builds: BuildView[]; nextCursor: string | null }; headers: Headers } = await get(path);
      assert.equal(page.status, 200);
      seen.push(...page.body.builds.map((b) => b.id));
      pages += 1;
      const link = page.headers.get('link');
      if (page.body.nextCursor === null) {
        assert.equal(link, null);
        path = null;
      } else {
        assert.match(link ?? '', new RegExp(`cursor=${page.body.nextCursor}>; rel="next"$`));
        path = `/api/builds?repo=acme/widget&limit=5&cursor=${page.body.nextCursor}`;
      }
    }
    assert.ok(pages >= 3);
    assert.deepEqual(
      seen,
      all.map((b) => b.id),
    );

    const dev = (await get<{ builds: BuildView[]; nextCursor: string | null }>('/api/builds?branch=dev&limit=2')).body;
    assert.ok(dev.builds.every((b) => b.ref === 'refs/heads/dev'));
    const rest = (await get<{ builds: BuildView[] }>(`/api/builds?branch=dev&limit=500&cursor=${dev.nextCursor ?? ''}`)).body.builds;
    assert.deepEqual(
      [...dev.builds, ...rest].map((b) => b.id),
      all.filter((b) => b.ref === 'refs/heads/dev').map((b) => b.id),
    );
    const failures = (await get<{ builds: BuildView[] }>('/api/builds?state=failure')).body.builds;
    assert.equal(failures.length, 4);
    assert.equal((await get('/api/builds?branch=dev&ref=refs/heads/main')).status, 400);
    assert.equal((await get('/api/builds?cursor=../x')).status, 400);
  });

  test('GET /build/status lists running builds, /build/history the last 25', async () => {
    const running = fakeBuild(template, { state: 'running', finishedAt: null, queuedAt: new Date().toISOString() });
    f.server.store.insert(running);
    for (let i = 0; i < 20; i++) f.server.store.insert(fakeBuild(template, { queuedAt: new Date(Date.now() + 10 + i).toISOString() }));
    const status = (await get<{ builds: BuildView[] }>('/build/status')).body.builds;
    assert.deepEqual(
      status.map((b) => b.id),
      [running.id],
    );
    const history = (await get<{ builds: BuildView[] }>('/build/history')).body.builds;
    assert.equal(history.length, 25);
    const newest = (await get<{ builds: BuildView[] }>('/api/builds?limit=25')).body.builds;
    assert.deepEqual(
      history.map((b) => b.id),
      newest.map((b) => b.id),
    );
    f.server.store.update({ ...running, state: 'cancelled', finishedAt: new Date().toISOString() });
  });

  test('GET /badge/:owner/:repo/:branch.svg shows the worst newest result of each build of the branch', async () => {
    const badge = async (path: string) => {
      const response = await fetch(`${f.server.url}${path}`);
      return { status: response.status, type: response.headers.get('content-type'), text: await response.text() };
    };
    const at = (ms: number) => new Date(Date.now() + 60_000 + ms).toISOString();
    f.server.store.insert(fakeBuild(template, { ref: 'refs/heads/feature/badge', definition: 'one', state: 'failure', queuedAt: at(1) }));
    f.server.store.insert(fakeBuild(template, { ref: 'refs/heads/feature/badge', definition: 'one', state: 'success', queuedAt: at(2) }));
    f.server.store.insert(fakeBuild(template, { ref: 'refs/heads/feature/badge', definition: 'two', state: 'success', queuedAt: at(3) }));
    let svg = await badge('/badge/acme/widget/feature/badge.svg');
    assert.equal(svg.status, 200);
    assert.equal(svg.type, 'image/svg+xml');
    assert.match(svg.text, /<svg [^>]*aria-label="autobuilder: success"/);
    f.server.store.insert(fakeBuild(template, { ref: 'refs/heads/feature/badge', definition: 'two', state: 'error', queuedAt: at(4) }));
    f.server.store.insert(fakeBuild(template, { ref: 'refs/heads/feature/badge', definition: 'one', state: 'running', finishedAt: null, queuedAt: at(5) }));
    svg = await badge('/badge/acme/widget/feature/badge.svg');
    assert.match(svg.text, /aria-label="autobuilder: error"/);
    svg = await badge('/badge/acme/widget/feature/badge.svg?definition=one&label=%3Cscript%3E');
    assert.match(svg.text, /aria-label="&lt;script&gt;: success"/);
    assert.doesNotMatch(svg.text, /<script/);
    svg = await badge('/badge/acme/widget/no-such-branch.svg');
    assert.match(svg.text, /aria-label="autobuilder: unknown"/);
    assert.equal((await badge('/badge/acme/widget/main.svg')).text.includes('autobuilder: success'), true);
    assert.equal((await badge('/badge/acme/widget/a//b.svg')).status, 400);
    assert.equal((await badge('/badge/ac%2Fme/widget/main.svg')).status, 400);
  });
});
