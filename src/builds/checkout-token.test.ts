import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isAppError } from '../errors.js';
import { createCheckout } from './checkout.js';

const TOKEN = 'ghs_thisIsTheCloneToken1234';

describe('fetching from GitHub with a token', () => {
  const seen: { path: string; authorization: string | undefined }[] = [];
  let host = '';
  let server: ReturnType<typeof createServer>;
  let home: string | undefined;

  before(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'autobuilder-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    const { readFileSync } = await import('node:fs');
    server = createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => {
      seen.push({ path: req.url ?? '', authorization: req.headers.authorization });
      res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    // git trusts the throwaway certificate through a HOME of this test's own
    await writeFile(join(dir, '.gitconfig'), `[http]\n\tsslCAInfo = ${join(dir, 'cert.pem')}\n`);
    home = process.env['HOME'];
    process.env['HOME'] = dir;
  });
  after(async () => {
    if (home !== undefined) process.env['HOME'] = home;
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  test('sends the token as an Authorization header to its host, never in the URL or an error', async () => {
    const checkout = createCheckout({ mirrorsDir: await mkdtemp(join(tmpdir(), 'autobuilder-mirrors-')), token: { value: TOKEN, host } });
    const error = await checkout.resolveRef({ cloneUrl: `https://${host}/acme/private.git`, ref: 'refs/heads/main' }).then(
      () => null,
      (err: unknown) => err,
    );
    assert.ok(isAppError(error, 'GIT_FAILED'), `the stand-in refuses, so the call fails: ${String(error)}`);
    assert.doesNotMatch(error.message, new RegExp(TOKEN));
    const expected = `Basic ${Buffer.from(`x-access-token:${TOKEN}`).toString('base64')}`;
    assert.ok(
      seen.some((r) => r.authorization === expected),
      `headers seen: ${JSON.stringify(seen)}`,
    );
    assert.ok(seen.every((r) => !r.path.includes(TOKEN)));
  });

  test('never sends the token to another host', async () => {
    seen.length = 0;
    const checkout = createCheckout({ mirrorsDir: await mkdtemp(join(tmpdir(), 'autobuilder-mirrors-')), token: { value: TOKEN, host: 'github.com' } });
    await checkout.resolveRef({ cloneUrl: `https://${host}/acme/private.git`, ref: 'refs/heads/main' }).catch(() => undefined);
    assert.ok(seen.length > 0, 'git did ask');
    assert.ok(seen.every((r) => r.authorization === undefined));
  });
});
