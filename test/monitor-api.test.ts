import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { io, type Socket } from 'socket.io-client';
import type { Build } from '../src/builds/build.js';
import type { MonitorBuildDelta, MonitorClientEvents, MonitorLogDelta, MonitorQueueDelta, MonitorServerEvents, MonitorSnapshot } from '../src/monitor/index.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

type MonitorSocket = Socket<MonitorServerEvents, MonitorClientEvents>;

/** Connects a socket.io client to `url`; `options` become the client's (headers, auth). */
function connect(url: string, options: { extraHeaders?: Record<string, string>; auth?: Record<string, string>; transports?: string[] } = {}): MonitorSocket {
  return io(url, { path: '/socket.io', reconnection: false, forceNew: true, transports: options.transports ?? ['websocket'], ...options });
}

/** Resolves on `connect`, rejects with the `connect_error` message. */
function connected(socket: MonitorSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', (err) => reject(err));
  });
}

describe('the monitor socket: snapshot then deltas in order, origin check', () => {
  let f: FixtureServer;
  before(async () => {
    f = await startFixtureServer('monitor-socket');
  });
  after(async () => {
    await f.close();
  });

  test('a client gets a snapshot, then build, log and queue deltas in order, and every log byte once', async () => {
    const socket = connect(f.server.url);
    const messages: { kind: string; seq: number; payload: MonitorSnapshot | MonitorBuildDelta | MonitorLogDelta | MonitorQueueDelta }[] = [];
    socket.on('snapshot', (s) => messages.push({ kind: 'snapshot', seq: s.seq, payload: s }));
    socket.on('build', (d) => messages.push({ kind: 'build', seq: d.seq, payload: d }));
    socket.on('log', (d) => messages.push({ kind: 'log', seq: d.seq, payload: d }));
    socket.on('queue', (d) => messages.push({ kind: 'queue', seq: d.seq, payload: d }));
    await connected(socket);
    socket.emit('watch', { repo: 'acme/widget' });
    while (!messages.some((m) => m.kind === 'snapshot')) await new Promise((r) => setTimeout(r, 10));

    const sha = f.repo.head as string;
    assert.equal(
      (
        await deliver(f.server.url, {
          event: 'push',
          secret: f.secret,
          payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/chatty', sha, cloneUrl: f.cloneUrl }),
        })
      ).status,
      202,
    );
    const build = await f.waitForBuild((b) => b.sha === sha && b.ref === 'refs/heads/chatty');
    assert.equal(build.state, 'success');
    // the last line is written just after the build ends
    await new Promise((r) => setTimeout(r, 200));
    socket.close();

    assert.equal(messages[0]?.kind, 'snapshot');
    const seqs = messages.map((m) => m.seq);
    assert.deepEqual(
      seqs,
      [...seqs].sort((a, b) => a - b),
      'seq only grows',
    );
    assert.equal(new Set(seqs).size, seqs.length);

    const events = messages
      .filter((m) => m.kind === 'build')
      .map((m) => m.payload as MonitorBuildDelta)
      .filter((d) => d.build.id === build.id);
    assert.equal(events[0]?.event, 'queued');
    assert.equal(events.at(-1)?.event, 'finished');
    assert.deepEqual(
      events.map((e) => e.build.state).filter((s, i, all) => s !== all[i - 1]),
      ['queued', 'running', 'success'],
    );
    // the queue delta after a build was queued says why it waits
    const firstQueue = messages.find((m) => m.kind === 'queue' && (m.payload as MonitorQueueDelta).waiting[build.id] !== undefined);
    assert.ok(firstQueue, 'a queue delta names the queued build');

    const logs = messages
      .filter((m) => m.kind === 'log')
      .map((m) => m.payload as MonitorLogDelta)
      .filter((d) => d.buildId === build.id);
    let offset = 0;
    for (const delta of logs) {
      assert.equal(delta.start, offset, 'each batch starts where the last ended');
      assert.equal(delta.skipped, 0);
      offset = delta.end;
    }
    const raw = await (await fetch(build.logUrl)).text();
    assert.equal(
      logs
        .flatMap((d) => d.lines)
        .map((l) => `${l}\n`)
        .join(''),
      raw,
      'the deltas carry the whole log once',
    );
    // a build's lines written before a change of it arrive before that change
    const finishedAt = messages.findIndex(
      (m) => m.kind === 'build' && (m.payload as MonitorBuildDelta).build.id === build.id && (m.payload as MonitorBuildDelta).event === 'finished',
    );
    const lastChattyLine = messages.findIndex((m) => m.kind === 'log' && (m.payload as MonitorLogDelta).lines.some((l) => l.startsWith('chatty line 150 ')));
    assert.ok(lastChattyLine !== -1 && lastChattyLine < finishedAt);
  });

  test('a snapshot lists running builds with their log tail, queued ones with why they wait, and the history', async () => {
    const sha = await f.repo.commit({ 'message.txt': 'snapshot version\n' }, 'for the snapshot');
    const started = new Promise<void>((resolve) => {
      const listener = (b: Build) => {
        if (b.sha !== sha) return;
        f.server.events.off('build.started', listener);
        resolve();
      };
      f.server.events.on('build.started', listener);
    });
    await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/chatty', sha, cloneUrl: f.cloneUrl }),
    });
    await started;
    await new Promise((r) => setTimeout(r, 800));
    const socket = connect(f.server.url);
    await connected(socket);
    const snapshot = await new Promise<MonitorSnapshot>((resolve) => {
      socket.once('snapshot', resolve);
      socket.emit('watch', {});
    });
    const tail = snapshot.tails[snapshot.running[0]?.id ?? ''];
    socket.close();
    assert.equal(snapshot.running.length, 1);
    assert.equal(snapshot.running[0]?.sha, sha);
    assert.ok(tail && tail.lines.some((l) => l.startsWith('chatty line ')), 'the running build has its tail');
    assert.ok(tail.lines.length <= 20);
    const raw = Buffer.from(
      await (await fetch(`${f.server.url}/api/builds/${snapshot.running[0].id}/log`, { headers: { range: `bytes=0-${tail.end - 1}` } })).arrayBuffer(),
    ).toString('utf8');
    assert.ok(raw.endsWith(tail.lines.map((l) => `${l}\n`).join('')), 'the tail ends at its offset in the log');
    assert.ok(snapshot.recent.some((b) => b.sha === sha));
    assert.match(snapshot.config.source, /^directory .*test\/fixtures\/config-repo$/);
    assert.equal(snapshot.workers, null, 'no workers when builds run here');
    await f.server.coordinator.idle();
  });

  test("refuses a handshake from a foreign Origin and accepts the server's own", async () => {
    const foreign = connect(f.server.url, { extraHeaders: { origin: 'https://evil.example' } });
    await assert.rejects(connected(foreign));
    foreign.close();
    const polling = connect(f.server.url, { extraHeaders: { origin: 'https://evil.example' }, transports: ['polling'] });
    await assert.rejects(connected(polling));
    polling.close();
    for (const origin of [f.server.url, f.server.url.replace('127.0.0.1', 'localhost')]) {
      const own = connect(f.server.url, { extraHeaders: { origin } });
      await connected(own);
      own.close();
    }
  });

  test('serves the socket.io browser client itself', async () => {
    const response = await fetch(`${f.server.url}/socket.io/socket.io.esm.min.js`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /javascript/);
    assert.match(await response.text(), /export\s*\{/);
  });
});

describe('page credentials', () => {
  let f: FixtureServer;
  const credentials = { username: 'ops', password: 'correct horse battery staple' };
  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  before(async () => {
    f = await startFixtureServer('credentials', { pages: { credentials } });
  });
  after(async () => {
    await f.close();
  });

  test('the pages and the build API need the credentials; webhooks, health, metrics and badges do not', async () => {
    for (const path of ['/monitor', '/builds/abc', '/api/builds', '/build/status', '/build/history']) {
      const response = await fetch(`${f.server.url}${path}`);
      assert.equal(response.status, 401, path);
      assert.match(response.headers.get('www-authenticate') ?? '', /^Basic realm="autobuilder"/);
      const wrong = await fetch(`${f.server.url}${path}`, { headers: { authorization: basic(credentials.username, 'wrong') } });
      assert.equal(wrong.status, 401, path);
    }
    const monitor = await fetch(`${f.server.url}/monitor`, { headers: { authorization: basic(credentials.username, credentials.password) } });
    assert.equal(monitor.status, 200);
    assert.match(await monitor.text(), /<meta name="autobuilder-socket-token" content="[A-Za-z0-9_-]{40,}">/);
    assert.equal((await fetch(`${f.server.url}/api/builds`, { headers: { authorization: basic(credentials.username, credentials.password) } })).status, 200);
    for (const path of ['/healthz', '/metrics', '/badge/acme/widget/main.svg', '/assets/app.css']) {
      assert.equal((await fetch(`${f.server.url}${path}`)).status, 200, path);
    }
    // writes are not the pages' business: a signed webhook still gets through
    const ping = await deliver(f.server.url, { event: 'ping', secret: f.secret, payload: { zen: 'Keep it logically awesome.', hook_id: 1 } });
    assert.equal(ping.status, 200);
  });

  test('the monitor socket needs the credentials or the token the page was given', async () => {
    const anonymous = connect(f.server.url);
    await assert.rejects(connected(anonymous), /unauthorized/);
    anonymous.close();
    const page = await (await fetch(`${f.server.url}/monitor`, { headers: { authorization: basic(credentials.username, credentials.password) } })).text();
    const token = /<meta name="autobuilder-socket-token" content="([^"]+)">/.exec(page)?.[1] ?? '';
    const withToken = connect(f.server.url, { auth: { token } });
    await connected(withToken);
    withToken.close();
    const wrongToken = connect(f.server.url, { auth: { token: `${token}x` } });
    await assert.rejects(connected(wrongToken));
    wrongToken.close();
    const withBasic = connect(f.server.url, { extraHeaders: { authorization: basic(credentials.username, credentials.password) } });
    await connected(withBasic);
    withBasic.close();
  });
});
