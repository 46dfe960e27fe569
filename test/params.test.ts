import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { BuildView } from '../src/http/build-view.js';
import { launchBrowser, openPage } from './support/browser.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

const TOKEN = 'params-test-token';

/** The build script of branch `params`: prints its parameters' variables and keeps them as its artifact. */
const SCRIPT = [
  '#!/bin/sh',
  'set -eu',
  'mkdir -p /tmp/out',
  'echo "target=${AUTOBUILDER_PARAM_TARGET:-unset} level=${AUTOBUILDER_PARAM_LEVEL:-unset} nonce=${AUTOBUILDER_PARAM__nonce:-unset}" | tee /tmp/out/params.txt',
  '',
].join('\n');

describe('build parameters: validation, env, cache key and opaque parameters', () => {
  let f: FixtureServer;
  let sha: string;

  before(async () => {
    f = await startFixtureServer('params', { api: { token: TOKEN } });
    sha = await f.repo.commit({ 'autobuild/params.sh': SCRIPT }, 'a script that prints its parameters');
  });
  after(async () => {
    await f.close();
  });

  const trigger = async (body: Record<string, unknown>) => {
    const response = await fetch(`${f.server.url}/api/builds`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ repo: 'acme/widget', ref: 'refs/heads/params', sha, ...body }),
    });
    return { status: response.status, body: (await response.json()) as { builds?: BuildView[]; error?: { code: string; message: string } } };
  };
  /** Triggers a build with `params` and waits for its end. */
  const build = async (params?: Record<string, string>) => {
    const answer = await trigger(params === undefined ? {} : { params });
    assert.equal(answer.status, 202, JSON.stringify(answer.body));
    const id = answer.body.builds?.[0]?.id;
    return f.waitForBuild((b) => b.id === id);
  };
  const artifactText = async (b: BuildView) => Buffer.from(await (await fetch(b.artifacts[0]?.url ?? '')).arrayBuffer()).toString();

  test('answers 422 naming each undeclared or invalid parameter, and makes no build', async () => {
    const before = (await f.builds()).length;
    const answer = await trigger({ params: { TARGET: 'plan9', LEVEL: '12', EXTRA: 'x', 'NOT A NAME': 'y' } });
    assert.equal(answer.status, 422);
    assert.equal(answer.body.error?.code, 'PARAMS_INVALID');
    const message = answer.body.error.message;
    assert.match(message, /TARGET: "plan9" is not one of "linux", "darwin", "windows"/);
    assert.match(message, /LEVEL: "12" does not match the pattern "\[0-9\]"/);
    assert.match(message, /EXTRA: not declared by the build/);
    assert.match(message, /NOT A NAME: must be a parameter name/);
    const tooLong = await trigger({ params: { TARGET: 'x'.repeat(1025) } });
    assert.equal(tooLong.status, 422);
    assert.match(tooLong.body.error?.message ?? '', /TARGET: longer than 1024 bytes/);
    assert.equal((await f.builds()).length, before);
  });

  let defaults: BuildView;
  test('a webhook build gets the defaults as AUTOBUILDER_PARAM_<NAME>, and shows them', async () => {
    const response = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/params', sha, tree: await f.repo.treeOf(sha), cloneUrl: f.cloneUrl }),
    });
    assert.equal(response.status, 202);
    defaults = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/params');
    assert.equal(defaults.state, 'success', defaults.description ?? '');
    assert.deepEqual(defaults.params, { TARGET: 'linux', LEVEL: '1' });
    assert.equal(await artifactText(defaults), 'target=linux level=1 nonce=unset\n');
    const api = (await (await fetch(`${f.server.url}/api/builds/${defaults.id}`)).json()) as BuildView;
    assert.deepEqual(api.params, { TARGET: 'linux', LEVEL: '1' });
  });

  let darwin: BuildView;
  test('a different value is a cache miss that names params; the build gets the value given', async () => {
    darwin = await build({ TARGET: 'darwin' });
    assert.equal(darwin.state, 'success', darwin.description ?? '');
    assert.equal(darwin.cached, false);
    assert.notEqual(darwin.cacheKey, defaults.cacheKey);
    assert.deepEqual(darwin.cacheMiss, { comparedWith: defaults.id, differs: ['params'], forced: false });
    assert.deepEqual(darwin.params, { TARGET: 'darwin', LEVEL: '1' });
    assert.equal(await artifactText(darwin), 'target=darwin level=1 nonce=unset\n');
    const page = await (await fetch(darwin.pageUrl)).text();
    assert.match(page, /<code class="param">TARGET=darwin<\/code>/);
  });

  test('the same values are a cache hit, and so are the defaults given explicitly', async () => {
    const again = await build({ TARGET: 'darwin' });
    assert.equal(again.cached, true);
    assert.equal(again.sourceBuildId, darwin.id);
    const explicit = await build({ TARGET: 'linux', LEVEL: '1' });
    assert.equal(explicit.cached, true);
    assert.equal(explicit.sourceBuildId, defaults.id);
  });

  test('an opaque parameter forces a new build without changing its cache key, and reaches the build', async () => {
    const forced = await build({ TARGET: 'darwin', _nonce: '42' });
    assert.equal(forced.state, 'success', forced.description ?? '');
    assert.equal(forced.cached, false);
    assert.equal(forced.coalesced, false);
    assert.equal(forced.cacheKey, darwin.cacheKey);
    assert.equal(forced.cacheMiss?.forced, true);
    assert.deepEqual(forced.params, { TARGET: 'darwin', LEVEL: '1', _nonce: '42' });
    assert.equal(await artifactText(forced), 'target=darwin level=1 nonce=42\n');
  });

  test('a rebuild keeps the parameters of the build it repeats', async () => {
    const response = await fetch(`${f.server.url}/api/builds/${darwin.id}/rebuild`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ force: true }),
    });
    assert.equal(response.status, 202);
    const id = ((await response.json()) as { builds: BuildView[] }).builds[0]?.id;
    const rebuilt = await f.waitForBuild((b) => b.id === id);
    assert.deepEqual(rebuilt.params, { TARGET: 'darwin', LEVEL: '1' });
    assert.equal(await artifactText(rebuilt), 'target=darwin level=1 nonce=unset\n');
  });

  test('the build page and /monitor show the parameters of a build, in a real browser', async () => {
    assert.ok(darwin, 'needs the build with parameters');
    const browser = await launchBrowser();
    try {
      const { page, problems } = await openPage(browser, darwin.pageUrl);
      const shown = await page.locator('[data-field="params"] code.param').allTextContents();
      assert.deepEqual(shown, ['TARGET=darwin', 'LEVEL=1']);
      await page.goto(`${f.server.url}/monitor`);
      const row = page.locator(`#history tr[data-build-id="${darwin.id}"]`);
      await row.waitFor();
      assert.deepEqual(await row.locator('code.param').allTextContents(), ['TARGET=darwin', 'LEVEL=1']);
      assert.deepEqual(problems, []);
    } finally {
      await browser.close();
    }
  });
});
