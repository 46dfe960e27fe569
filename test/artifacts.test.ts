import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { parse as parseContentDisposition } from 'content-disposition';
import type { BuildView } from '../src/http/build-view.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

describe('artifact downloads', () => {
  let f: FixtureServer;
  let build: BuildView;
  let bytes: Buffer;

  before(async () => {
    f = await startFixtureServer('artifacts');
    const sha = f.repo.head as string;
    await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl: f.cloneUrl }),
    });
    build = await f.waitForBuild((b) => b.sha === sha);
    assert.equal(build.state, 'success');
    bytes = Buffer.from(await (await fetch(build.artifacts[0]?.url ?? '')).arrayBuffer());
  });
  after(async () => {
    await f.close();
  });

  test('serves an artifact by digest with its ETag and immutable caching', async () => {
    const digest = build.artifacts[0]?.digest ?? '';
    assert.equal(createHash('sha256').update(bytes).digest('hex'), digest);
    const response = await fetch(`${f.server.url}/api/artifacts/${digest}`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('etag'), `"${digest}"`);
    assert.match(response.headers.get('cache-control') ?? '', /immutable/);
    assert.equal(response.headers.get('content-length'), String(bytes.length));
    const cached = await fetch(`${f.server.url}/api/artifacts/${digest}`, { headers: { 'if-none-match': `"${digest}"` } });
    assert.equal(cached.status, 304);
  });

  test('answers a Range request with 206 and just those bytes, and 416 past the end', async () => {
    const url = build.artifacts[0]?.url ?? '';
    const partial = await fetch(url, { headers: { range: 'bytes=2-6' } });
    assert.equal(partial.status, 206);
    assert.equal(partial.headers.get('content-range'), `bytes 2-6/${bytes.length}`);
    assert.deepEqual(Buffer.from(await partial.arrayBuffer()), bytes.subarray(2, 7));
    const suffix = await fetch(url, { headers: { range: 'bytes=-3' } });
    assert.deepEqual(Buffer.from(await suffix.arrayBuffer()), bytes.subarray(bytes.length - 3));
    const beyond = await fetch(url, { headers: { range: `bytes=${bytes.length + 10}-` } });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers.get('content-range'), `bytes */${bytes.length}`);
    const stale = await fetch(url, { headers: { range: 'bytes=2-6', 'if-range': '"another"' } });
    assert.equal(stale.status, 200);
  });

  test('serves an artifact by build and name as an attachment', async () => {
    const response = await fetch(`${f.server.url}/api/builds/${build.id}/artifacts/result.txt`);
    assert.equal(response.status, 200);
    const disposition = parseContentDisposition(response.headers.get('content-disposition') ?? '');
    assert.equal(disposition.type, 'attachment');
    assert.equal(disposition.parameters['filename'], 'result.txt');
    assert.deepEqual(Buffer.from(await response.arrayBuffer()), bytes);
    assert.equal((await fetch(`${f.server.url}/api/builds/${build.id}/artifacts/other.txt`)).status, 404);
  });

  test('serves the latest successful artifact of a ref', async () => {
    const sha = await f.repo.commit({ 'message.txt': 'newest\n' }, 'newest');
    await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl: f.cloneUrl }),
    });
    const newest = await f.waitForBuild((b) => b.sha === sha);
    const response = await fetch(`${f.server.url}/api/repos/acme/widget/artifacts/result.txt?ref=refs/heads/main`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-autobuilder-build'), newest.id);
    assert.equal(Buffer.from(await response.arrayBuffer()).toString(), 'newest\n');
    assert.equal((await fetch(`${f.server.url}/api/repos/acme/widget/artifacts/result.txt?ref=refs/heads/nope`)).status, 404);
    assert.equal((await fetch(`${f.server.url}/api/repos/acme/widget/artifacts/result.txt`)).status, 400);
  });

  test('refuses malformed digests and hostile names with clean JSON errors', async () => {
    for (const path of [
      '/api/artifacts/..%2F..%2Fetc%2Fpasswd',
      '/api/artifacts/ABC',
      '/api/repos/..%2F/widget/artifacts/x?ref=refs/heads/main',
      '/api/builds/..%2Fx/artifacts/y',
    ]) {
      const response = await fetch(`${f.server.url}${path}`);
      assert.ok([400, 404].includes(response.status), `${path}: ${response.status}`);
      const body = (await response.json()) as { error: { code: string } };
      assert.ok(body.error.code.length > 0);
    }
  });
});
