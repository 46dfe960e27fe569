import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BuildView } from '../src/http/build-view.js';
import { makeTestDir } from './support/data-dir.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { createGitRepository, type GitRepository } from './support/git-repository.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

const TOKEN = 'git-remotes-api-token';
const WIDGET = resolve(import.meta.dirname, 'fixtures', 'projects', 'widget');

/** Sends a signed push of `sha` on main for acme/widget. */
async function push(f: FixtureServer, sha: string): Promise<void> {
  const payload = pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, tree: await f.repo.treeOf(sha), cloneUrl: f.cloneUrl });
  const response = await deliver(f.server.url, { event: 'push', secret: f.secret, payload });
  assert.equal(response.status, 202, JSON.stringify(response.body));
}

/** Polls until a build of `sha` is listed (in any state). */
async function listed(f: FixtureServer, sha: string): Promise<BuildView> {
  for (let i = 0; i < 300; i++) {
    const found = (await f.builds()).find((b) => b.sha === sha);
    if (found !== undefined) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no build of ${sha} listed`);
}

/** A free TCP port on 127.0.0.1 that nothing listens on (connections are refused). */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

/** A "git server" that accepts connections and never answers: a remote that hangs. */
async function startSilentServer(): Promise<{ port: number; sockets: Set<Socket>; server: Server }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.resume(); // reads (and drops) the request, so the client's close is seen
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, sockets, server };
}

describe('credentials in clone-URL rewrites', () => {
  const PASSWORD = 's3cr3t-in-a-rewrite-url';
  let f: FixtureServer;
  before(async () => {
    const target = `http://builder:${PASSWORD}@127.0.0.1:${await deadPort()}/mirror/widget.git`;
    f = await startFixtureServer('git-credentials', { cloneUrlRewrites: [{ from: 'https://github.com/acme/widget.git', to: target }] });
  });
  after(async () => {
    await f.close({ graceMs: 0 });
  });

  test('never reach the build description, the build log or the commit statuses when git fails', async () => {
    const sha = f.repo.head as string;
    await push(f, sha);
    const build = await f.waitForBuild((b) => b.sha === sha);
    assert.equal(build.state, 'error');
    assert.match(build.description ?? '', /cannot fetch .* from http:\/\/\*\*\*@127\.0\.0\.1:\d+\/mirror\/widget\.git/);
    const log = await (await fetch(build.logUrl)).text();
    assert.match(log, /\*\*\*@127\.0\.0\.1/);
    const everything = [JSON.stringify(build), log, JSON.stringify(await (await fetch(`${f.server.url}/api/builds/${build.id}`)).json())];
    for (const text of everything) assert.ok(!text.includes(PASSWORD) && !text.includes('builder:'), text.slice(0, 500));
    await f.server.close({ graceMs: 0 }).catch(() => undefined);
    const statuses = f.github.requests.filter((r) => r.operationId === 'repos/create-commit-status');
    assert.ok(statuses.length > 0, 'a status was posted');
    for (const status of statuses) assert.ok(!JSON.stringify(status.body).includes(PASSWORD), JSON.stringify(status.body));
  });
});

describe('a git remote that never answers', () => {
  let f: FixtureServer;
  let remote: Awaited<ReturnType<typeof startSilentServer>>;
  before(async () => {
    remote = await startSilentServer();
    f = await startFixtureServer('git-dead-remote', {
      api: { token: TOKEN },
      // longer than the 5 s a cancel may take, so only the cancel can end the build in time;
      // the remote helper git leaves behind gives up after it
      builds: { gitTimeoutSeconds: 8 },
      cloneUrlRewrites: [{ from: 'https://github.com/acme/widget.git', to: `http://127.0.0.1:${remote.port}/acme/widget.git` }],
    });
  });
  after(async () => {
    await f.close({ graceMs: 0 });
    for (const socket of remote.sockets) socket.destroy();
    remote.server.close();
  });

  test('a build stuck fetching from it is cancelled through the API within 5 s, and git lets go of the connection', async (t) => {
    const sha = f.repo.head as string;
    await push(f, sha);
    const stuck = await listed(f, sha);
    // git has connected and waits for an answer that never comes
    for (let i = 0; i < 100 && remote.sockets.size === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(remote.sockets.size > 0, 'git connected to the silent remote');
    await new Promise((r) => setTimeout(r, 500));
    // the push payload's tree decided the cache without git: the build runs and its fetch hangs
    assert.equal((await listed(f, sha)).state, 'running', 'running: its fetch hangs');

    const started = Date.now();
    const response = await fetch(`${f.server.url}/api/builds/${stuck.id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(response.status, 200, await response.clone().text());
    const ended = await f.waitForBuild((b) => b.id === stuck.id, 5_000);
    const seconds = (Date.now() - started) / 1000;
    assert.equal(ended.state, 'cancelled', ended.description ?? '');
    assert.ok(seconds <= 5, `ended after ${seconds} s`);
    t.diagnostic(`cancelled ${seconds} s after the cancel request`);
    // the git process was stopped and its remote helper (which SIGINT to git does not reach)
    // gives up within builds.gitTimeoutSeconds: nothing stays on the socket
    for (let i = 0; i < 200 && remote.sockets.size > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(remote.sockets.size, 0, 'the connection to the silent remote was closed');
  });
});

describe('a git remote that never answers, with builds.gitTimeoutSeconds', () => {
  let f: FixtureServer;
  let remote: Awaited<ReturnType<typeof startSilentServer>>;
  before(async () => {
    remote = await startSilentServer();
    f = await startFixtureServer('git-timeout', {
      builds: { gitTimeoutSeconds: 1 },
      cloneUrlRewrites: [{ from: 'https://github.com/acme/widget.git', to: `http://127.0.0.1:${remote.port}/acme/widget.git` }],
    });
  });
  after(async () => {
    await f.close({ graceMs: 0 });
    for (const socket of remote.sockets) socket.destroy();
    remote.server.close();
  });

  test('ends the build `error` once git has had no answer for that long', async () => {
    const sha = f.repo.head as string;
    const started = Date.now();
    await push(f, sha);
    const build = await f.waitForBuild((b) => b.sha === sha, 10_000);
    assert.equal(build.state, 'error');
    assert.match(build.description ?? '', /no answer for 1 s \(builds\.gitTimeoutSeconds\)/);
    assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
  });
});

describe('a manual build on GitHub Enterprise Server', () => {
  let f: FixtureServer;
  let source: GitRepository & { head: string | null };
  before(async () => {
    const base = await makeTestDir('git-ghes-source');
    source = await createGitRepository(join(base, 'acme', 'widget.git'), WIDGET);
    // only a clone URL on the Enterprise host leads to the repository
    f = await startFixtureServer('git-ghes', {
      api: { token: TOKEN },
      github: { apiUrl: 'https://ghes.example/api/v3', token: 'test-token' },
      cloneUrlRewrites: [{ from: 'https://ghes.example/', to: `file://${base}/` }],
    });
  });
  after(async () => {
    await f.close({ graceMs: 0 });
  });

  test('fetches from the configured host (from github.apiUrl), never from github.com', async () => {
    const response = await fetch(`${f.server.url}/api/builds`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ repo: 'acme/widget', ref: 'refs/heads/main' }),
    });
    assert.equal(response.status, 202, await response.clone().text());
    const build = await f.waitForBuild((b) => b.sha === source.head);
    assert.equal(build.state, 'success', build.description ?? '');
    const request = f.server.store.getRequest(build.id);
    assert.equal(request?.cloneUrl, 'https://ghes.example/acme/widget.git');
  });
});
