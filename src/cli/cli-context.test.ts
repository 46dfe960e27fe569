import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { z } from 'zod';
import { createApiClient, createCliOutput, DEFAULT_SERVER_URL, isColorWanted, resolveConnection, ServerError, toCliConfigPath } from './cli-context.js';
import { CliError, EXIT } from './exit-codes.js';

describe('resolveConnection', () => {
  let dir: string;
  let file: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cli-context-'));
    await mkdir(join(dir, 'autobuilder'));
    file = join(dir, 'autobuilder', 'cli.json');
    await writeFile(file, JSON.stringify({ url: 'https://file.example/ci/', token: 'file-token' }));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('takes the config file under XDG_CONFIG_HOME when set, else ~/.config', () => {
    assert.equal(toCliConfigPath({ XDG_CONFIG_HOME: dir }), file);
    assert.match(toCliConfigPath({}), /\.config\/autobuilder\/cli\.json$/);
  });

  test('prefers the flag, then the env, then the config file, then the default', () => {
    const env = { XDG_CONFIG_HOME: dir, AUTOBUILDER_URL: 'http://env.example:1', AUTOBUILDER_API_TOKEN: 'env-token' };
    assert.deepEqual(resolveConnection({ url: 'http://flag.example', token: 'flag-token' }, env), {
      url: 'http://flag.example',
      token: 'flag-token',
      urlSource: '--url',
    });
    assert.deepEqual(resolveConnection({}, env), { url: 'http://env.example:1', token: 'env-token', urlSource: 'AUTOBUILDER_URL' });
    assert.deepEqual(resolveConnection({}, { XDG_CONFIG_HOME: dir }), { url: 'https://file.example/ci', token: 'file-token', urlSource: 'config file' });
    assert.deepEqual(resolveConnection({}, { XDG_CONFIG_HOME: join(dir, 'none') }), { url: DEFAULT_SERVER_URL, token: null, urlSource: 'default' });
  });

  test('refuses a URL that is not http(s) and a config file that is not the expected JSON, with exit 2', async () => {
    const usage = (err: unknown) => err instanceof CliError && err.exitCode === EXIT.usage;
    assert.throws(() => resolveConnection({ url: 'ftp://x' }, {}, join(dir, 'none.json')), usage);
    assert.throws(() => resolveConnection({ url: 'not a url' }, {}, join(dir, 'none.json')), usage);
    assert.throws(() => resolveConnection({ url: 'http://user:pw@x' }, {}, join(dir, 'none.json')), usage);
    const bad = join(dir, 'bad.json');
    await writeFile(bad, '{ "url": 1 }');
    assert.throws(
      () => resolveConnection({}, {}, bad),
      (err: unknown) => usage(err) && /bad\.json: url:/.test((err as Error).message),
    );
    await writeFile(bad, '{ nope');
    assert.throws(
      () => resolveConnection({}, {}, bad),
      (err: unknown) => usage(err) && /is not JSON/.test((err as Error).message),
    );
  });
});

describe('createApiClient', () => {
  let server: Server;
  let url: string;
  const seen: { path: string; authorization: string | undefined }[] = [];
  before(async () => {
    server = createServer((req, res) => {
      seen.push({ path: req.url ?? '', authorization: req.headers.authorization });
      if (req.url?.startsWith('/ok') === true) {
        res.writeHead(202, { 'Content-Type': 'application/json' }).end(JSON.stringify({ n: 1 }));
      } else if (req.url === '/missing') {
        res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: { code: 'NOT_FOUND', message: 'no build x' } }));
      } else if (req.url === '/html') {
        res.writeHead(502, { 'Content-Type': 'text/html' }).end('<html>bad gateway</html>');
      } else {
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ n: 'not a number' }));
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  const schema = z.object({ n: z.number() });

  test('sends the bearer token and the query, and returns the parsed answer with its status', async () => {
    const api = createApiClient({ url, token: 'secret' });
    assert.deepEqual(await api.json('/ok', schema, { query: { wait: 5, skip: undefined } }), { status: 202, body: { n: 1 } });
    assert.deepEqual(seen.at(-1), { path: '/ok?wait=5', authorization: 'Bearer secret' });
  });

  test("turns an error answer into a ServerError with the server's code and message, exit 3", async () => {
    const api = createApiClient({ url, token: null });
    await assert.rejects(api.get('/missing', schema), (err: unknown) => {
      assert.ok(err instanceof ServerError);
      assert.equal(err.exitCode, EXIT.server);
      assert.equal(err.status, 404);
      assert.equal(err.code, 'NOT_FOUND');
      assert.match(err.message, /404 NOT_FOUND: no build x/);
      return true;
    });
    await assert.rejects(api.get('/html', schema), (err: unknown) => err instanceof ServerError && err.code === 'HTTP_502');
    await assert.rejects(api.get('/shape', schema), (err: unknown) => err instanceof ServerError && err.code === 'BAD_ANSWER' && /n:/.test(err.message));
  });

  test('names the server and the socket error when nothing answers', async () => {
    // a port that was just free: nothing listens on it
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const api = createApiClient({ url: `http://127.0.0.1:${port}`, token: null });
    await assert.rejects(api.get('/api/queue', schema), (err: unknown) => {
      assert.ok(err instanceof ServerError);
      assert.equal(err.code, 'UNREACHABLE');
      assert.equal(err.message, `cannot reach the autobuilder server at http://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`);
      return true;
    });
  });
});

describe('createCliOutput', () => {
  const capture = (isTTY: boolean) => {
    const stream = Object.assign(new PassThrough(), { isTTY });
    let text = '';
    stream.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    return { stream, text: () => text };
  };

  test('prints one JSON document with --json and keeps notes off stdout', () => {
    const stdout = capture(false);
    const stderr = capture(false);
    const out = createCliOutput({ json: true, stdout: stdout.stream, stderr: stderr.stream, env: {} });
    out.note('queued');
    out.write('log line\n');
    out.result({ a: 1 }, () => 'human');
    assert.deepEqual(JSON.parse(stdout.text()), { a: 1 });
    assert.equal(stderr.text(), 'log line\n');
  });

  test('colours only a TTY, and never with NO_COLOR', () => {
    assert.equal(isColorWanted({ isTTY: true }, {}), true);
    assert.equal(isColorWanted({ isTTY: false }, {}), false);
    assert.equal(isColorWanted({}, {}), false);
    assert.equal(isColorWanted({ isTTY: true }, { NO_COLOR: '1' }), false);
    assert.equal(createCliOutput({ json: false, stdout: capture(true).stream, env: {} }).style.red('x'), '\x1b[31mx\x1b[39m');
    assert.equal(createCliOutput({ json: false, stdout: capture(true).stream, env: { NO_COLOR: '1' } }).style.red('x'), 'x');
  });
});
