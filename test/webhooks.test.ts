import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { sign } from '@octokit/webhooks-methods';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, examplePayloads, pushPayload } from './support/webhook-delivery.js';

describe('POST /hooks/github', () => {
  let f: FixtureServer;
  let sha: string;
  let payload: Record<string, unknown>;

  before(async () => {
    f = await startFixtureServer('webhooks');
    sha = f.repo.head as string;
    payload = pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl: f.cloneUrl });
  });
  after(async () => {
    await f.close();
  });

  /** Asserts the answer is 401 with a JSON error and that nothing was stored or queued. */
  const assertRefused = async (response: Awaited<ReturnType<typeof deliver>>, code: string) => {
    assert.equal(response.status, 401);
    assert.equal((response.body as { error: { code: string } }).error.code, code);
    assert.equal(f.server.store.getDelivery(response.deliveryId), null);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await f.builds(), []);
  };

  test('answers 401 and queues nothing when the body was tampered with', async () => {
    const tampered = JSON.stringify({ ...payload, ref: 'refs/heads/evil' });
    await assertRefused(await deliver(f.server.url, { event: 'push', payload, secret: f.secret, body: tampered }), 'SIGNATURE_INVALID');
  });

  test('answers 401 when the signature was made with another secret', async () => {
    await assertRefused(await deliver(f.server.url, { event: 'push', payload, secret: 'wrong secret' }), 'SIGNATURE_INVALID');
  });

  test('answers 401 when X-Hub-Signature-256 is missing', async () => {
    await assertRefused(
      await deliver(f.server.url, { event: 'push', payload, secret: f.secret, headers: { 'x-hub-signature-256': null } }),
      'SIGNATURE_MISSING',
    );
  });

  test('answers 401 to a delivery signed with SHA-1 only', async () => {
    const sha1 = `sha1=${createHmac('sha1', f.secret).update(JSON.stringify(payload)).digest('hex')}`;
    const response = await deliver(f.server.url, {
      event: 'push',
      payload,
      secret: f.secret,
      headers: { 'x-hub-signature-256': null, 'x-hub-signature': sha1 },
    });
    await assertRefused(response, 'SIGNATURE_MISSING');
    assert.match((response.body as { error: { message: string } }).error.message, /SHA-1/);
  });

  test('answers 401 to a malformed signature header', async () => {
    await assertRefused(
      await deliver(f.server.url, { event: 'push', payload, secret: f.secret, headers: { 'x-hub-signature-256': 'sha256=zz' } }),
      'SIGNATURE_INVALID',
    );
  });

  test('answers 200 to every example ping', async () => {
    for (const ping of examplePayloads('ping')) {
      const response = await deliver(f.server.url, { event: 'ping', payload: ping, secret: f.secret });
      assert.equal(response.status, 200);
      assert.equal((response.body as { ok: boolean }).ok, true);
      assert.equal(f.server.store.getDelivery(response.deliveryId)?.outcome, 'ping');
    }
  });

  test('ignores a push that deleted its branch, with the reason, and builds nothing', async () => {
    const deleted = { ...payload, deleted: true, after: '0000000000000000000000000000000000000000' };
    const response = await deliver(f.server.url, { event: 'push', payload: deleted, secret: f.secret });
    assert.equal(response.status, 200);
    assert.match((response.body as { reason: string }).reason, /deleted/);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(await f.builds(), []);
  });

  test('answers 400 to a correctly signed body that is not JSON', async () => {
    const body = 'not json {';
    const response = await fetch(`${f.server.url}/hooks/github`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-hub-signature-256': await sign(f.secret, body) },
      body,
    });
    assert.equal(response.status, 400);
    assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'BAD_REQUEST');
  });

  /** POSTs `body` as raw bytes, signed over exactly those bytes; resolves with the status and the error code. */
  const postSignedBytes = async (body: Buffer, event = 'ping') => {
    const signature = `sha256=${createHmac('sha256', f.secret).update(body).digest('hex')}`;
    const response = await fetch(`${f.server.url}/hooks/github`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-github-event': event, 'x-hub-signature-256': signature },
      body,
    });
    const answer = (await response.json()) as { ok?: boolean; zen?: string; error?: { code: string; message: string } };
    return { status: response.status, answer };
  };

  test('checks the signature over the raw bytes: a signed body that is not UTF-8 passes it and gets 400, not 401', async () => {
    const body = Buffer.concat([Buffer.from('{"zen":"'), Buffer.from([0xff, 0xfe]), Buffer.from('","hook_id":1}')]);
    const { status, answer } = await postSignedBytes(body);
    assert.equal(status, 400, JSON.stringify(answer));
    assert.equal(answer.error?.code, 'BAD_REQUEST');
    assert.match(answer.error.message, /UTF-8/);
  });

  test('accepts a signed body with multi-byte UTF-8 characters', async () => {
    const { status, answer } = await postSignedBytes(Buffer.from(JSON.stringify({ zen: 'Grüße, 日本 🚀', hook_id: 1 }), 'utf8'));
    assert.equal(status, 200, JSON.stringify(answer));
    assert.equal(answer.zen, 'Grüße, 日本 🚀');
  });

  test('answers 413 to a body over 25 MB, declared or streamed, without buffering it, and stays up', async () => {
    /** Sends `total` bytes (or only declares them) and resolves with the answer's status. */
    const send = (headers: Record<string, string>, total: number) =>
      new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no answer within 20 s')), 20_000);
        const req = request(`${f.server.url}/hooks/github`, { method: 'POST', headers: { 'x-github-event': 'push', ...headers } }, (res) => {
          clearTimeout(timer);
          res.resume();
          resolve(res.statusCode ?? 0);
          req.destroy();
        });
        req.on('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        const chunk = Buffer.alloc(1024 * 1024, 0x20);
        let sent = 0;
        const pump = () => {
          while (sent < total && !req.destroyed && req.write(chunk)) sent += chunk.length;
          if (sent < total && !req.destroyed) req.once('drain', pump);
          else if (!req.destroyed) req.end();
        };
        pump();
      });
    assert.equal(await send({ 'content-length': String(26 * 1024 * 1024) }, 26 * 1024 * 1024), 413);
    assert.equal(await send({ 'transfer-encoding': 'chunked' }, 30 * 1024 * 1024), 413);
    assert.equal((await fetch(`${f.server.url}/healthz`)).status, 200);
  });

  test('handles every example push, create, delete, ping and pull_request payload without a server error', async () => {
    for (const event of ['push', 'create', 'delete', 'ping', 'pull_request']) {
      const examples = examplePayloads(event);
      assert.ok(examples.length > 0, event);
      for (const example of examples) {
        const response = await deliver(f.server.url, { event, payload: example, secret: f.secret });
        const what = `${event} ${JSON.stringify(example['action'] ?? example['ref'] ?? '')}: ${response.status} ${JSON.stringify(response.body)}`;
        assert.ok(response.status === 200 || response.status === 202, what);
      }
    }
    // what was accepted is handed on after the answer: that must not fail either
    for (let i = 0; i < 100 && f.server.store.unprocessedDeliveries().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(f.server.store.unprocessedDeliveries(), []);
    assert.equal((await fetch(`${f.server.url}/healthz`)).status, 200);
  });

  test('ignores hostile refs and repository names instead of building them', async () => {
    for (const [ref, fullName] of [
      ['refs/heads/$(touch /tmp/pwn)', 'acme/widget'],
      ['refs/heads/a..b', 'acme/widget'],
      ['refs/heads/main', '../../etc/passwd'],
      ['refs/heads/-x', 'acme/widget'],
    ] as const) {
      const hostile = structuredClone(payload);
      hostile['ref'] = ref;
      (hostile['repository'] as Record<string, unknown>)['full_name'] = fullName;
      const response = await deliver(f.server.url, { event: 'push', payload: hostile, secret: f.secret });
      assert.ok(response.status < 500, `${ref} ${fullName}: ${response.status}`);
    }
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(existsSync('/tmp/pwn'), false, 'a ref name ran a command');
    assert.deepEqual(await f.builds(), []);
  });

  test('builds branches whose names are shell syntax without running any of it', async () => {
    const names = ['odd/$(touch${IFS}/tmp/pwn)', 'odd/";id;"', 'odd/`touch${IFS}/tmp/pwn`', "odd/'$(id)'"];
    for (const name of names) {
      const sha = await f.repo.commit({ 'name.txt': name }, `for ${name}`);
      const response = await deliver(f.server.url, {
        event: 'push',
        secret: f.secret,
        payload: pushPayload({ owner: 'acme', repo: 'widget', ref: `refs/heads/${name}`, sha, cloneUrl: f.cloneUrl }),
      });
      assert.equal(response.status, 202, name);
      const build = await f.waitForBuild((b) => b.sha === sha);
      assert.equal(build.state, 'success', `${name}: ${build.description ?? ''}`);
      const artifact = await (await fetch(build.artifacts[0]?.url ?? '')).text();
      assert.equal(artifact, name, 'the script got the name as plain text');
      assert.ok((await (await fetch(build.logUrl)).text()).includes(`ref name: ${name}`));
    }
    assert.equal(existsSync('/tmp/pwn'), false, 'nothing ran on the host');
  });

  test('accepts a correctly signed push with 202 and queues its build', async () => {
    const response = await deliver(f.server.url, { event: 'push', payload, secret: f.secret });
    assert.equal(response.status, 202);
    assert.equal(f.server.store.getDelivery(response.deliveryId)?.outcome, 'accepted');
    const build = await f.waitForBuild((b) => b.sha === sha);
    assert.equal(build.deliveryId, response.deliveryId);
    assert.equal(build.state, 'success', build.description ?? '');
  });
});

describe('the Host allowlist (DNS rebinding)', () => {
  let f: FixtureServer;
  before(async () => {
    f = await startFixtureServer('host-guard', {
      listen: { host: '127.0.0.1', port: 0, allowedHosts: ['builds.internal'] },
      publicUrl: 'https://ci.example.test',
      pages: { allowedOrigins: ['https://monitor.example.test:8443'] },
    });
  });
  after(async () => {
    await f.close();
  });

  /** Sends a request with a forged `Host` header; resolves with the status and the JSON answer. */
  const send = (host: string, options: { method?: string; path?: string; headers?: Record<string, string>; body?: string } = {}) =>
    new Promise<{ status: number; body: { error?: { code: string; message: string } } }>((resolve, reject) => {
      const url = new URL(f.server.url);
      const req = request(
        { host: url.hostname, port: url.port, method: options.method ?? 'GET', path: options.path ?? '/healthz', headers: { ...options.headers, host } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { error?: { code: string; message: string } } }));
        },
      );
      req.on('error', reject);
      req.end(options.body);
    });

  test('answers 421 with a JSON error to a request whose Host is a name this server does not have', async () => {
    const { status, body } = await send('attacker.example:8462');
    assert.equal(status, 421);
    assert.equal(body.error?.code, 'HOST_NOT_ALLOWED');
    assert.match(body.error.message, /attacker\.example/);
  });

  test('refuses a signed webhook sent to a foreign Host before storing it', async () => {
    const payload = examplePayloads('ping')[0];
    const body = JSON.stringify(payload);
    const headers = {
      'content-type': 'application/json',
      'x-github-event': 'ping',
      'x-github-delivery': 'forged-host-delivery',
      'x-hub-signature-256': await sign(f.secret, body),
    };
    const refused = await send('rebound.attacker.example', { method: 'POST', path: '/hooks/github', headers, body });
    assert.equal(refused.status, 421);
    assert.equal(f.server.store.getDelivery('forged-host-delivery'), null);
    // the same delivery to the publicUrl host, as GitHub sends it, is taken in
    const taken = await send('ci.example.test', { method: 'POST', path: '/hooks/github', headers, body });
    assert.equal(taken.status, 200, JSON.stringify(taken.body));
    assert.equal(f.server.store.getDelivery('forged-host-delivery')?.outcome, 'ping');
  });

  test('answers the listen address, localhost, the publicUrl host, the allowed origins and listen.allowedHosts', async () => {
    const { port } = new URL(f.server.url);
    for (const host of [
      `127.0.0.1:${port}`,
      `localhost:${port}`,
      `[::1]:${port}`,
      'ci.example.test',
      'CI.Example.Test:443',
      'monitor.example.test:8443',
      'builds.internal',
    ]) {
      assert.equal((await send(host)).status, 200, host);
    }
    for (const host of ['ci.example.test.attacker.example', 'builds.internal.attacker.example', '10.0.0.1', 'localhost.attacker.example']) {
      assert.equal((await send(host)).status, 421, host);
    }
  });
});
