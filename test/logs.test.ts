import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { BuildView } from '../src/http/build-view.js';
import { readEvents, type ParsedEvent } from './support/event-stream.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

/** The numbers of the chatty build's own lines in `lines`, in order. */
const chattyNumbers = (lines: readonly string[]) => lines.flatMap((line) => /^chatty line (\d+) of 150 /.exec(line)?.[1] ?? []).map(Number);

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe('build logs over HTTP: plain text, Range, follow, server-sent events', () => {
  let f: FixtureServer;
  let chatty: BuildView;

  before(async () => {
    f = await startFixtureServer('logs');
  });
  after(async () => {
    await f.close();
  });

  /** Pushes `branch` at the repository's head and returns the build once it is queued. */
  const push = async (branch: string): Promise<BuildView> => {
    const queued = new Promise<string>((resolve) => {
      const listener = (b: { id: string; ref: string }) => {
        if (b.ref !== `refs/heads/${branch}`) return;
        f.server.events.off('build.queued', listener);
        resolve(b.id);
      };
      f.server.events.on('build.queued', listener);
    });
    const response = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: `refs/heads/${branch}`, sha: f.repo.head as string, cloneUrl: f.cloneUrl }),
    });
    assert.equal(response.status, 202);
    const id = await queued;
    return (await (await fetch(`${f.server.url}/api/builds/${id}`)).json()) as BuildView;
  };

  const openEvents = async (url: string, headers: Record<string, string> = {}, signal?: AbortSignal) => {
    const response = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, ...(signal === undefined ? {} : { signal }) });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.ok(response.body);
    return readEvents(response.body);
  };

  test('an SSE client dropped mid-build and reconnected with Last-Event-ID gets every line exactly once', async () => {
    chatty = await push('chatty');
    const received: string[] = [];
    const states: string[] = [];
    const controller = new AbortController();
    let lastId: string | null = null;
    // first connection: read until some of the build's own lines came, then drop it
    const first = await openEvents(chatty.logUrl, {}, controller.signal);
    try {
      for await (const event of first) {
        if (event.event === 'build') states.push((JSON.parse(event.data) as BuildView).state);
        if (event.event === 'log') {
          received.push(...(JSON.parse(event.data) as string[]));
          lastId = event.id;
          if (chattyNumbers(received).length >= 20) break;
        }
        assert.notEqual(event.event, 'end', 'the build ended before the client was dropped: make it slower');
      }
    } finally {
      controller.abort();
    }
    assert.ok(lastId !== null && /^\d+$/.test(lastId), `log events carry a byte offset as id, got ${String(lastId)}`);
    const seenBeforeDrop = chattyNumbers(received).length;
    // while nobody listens, the build writes on
    await new Promise((r) => setTimeout(r, 600));

    let end: ParsedEvent | null = null;
    for await (const event of await openEvents(chatty.logUrl, { 'last-event-id': lastId })) {
      if (event.event === 'build') states.push((JSON.parse(event.data) as BuildView).state);
      if (event.event === 'log') received.push(...(JSON.parse(event.data) as string[]));
      if (event.event === 'end') end = event;
    }
    assert.ok(end !== null, 'the stream ends with an end event');
    const done = JSON.parse(end.data) as { state: string; offset: number };
    assert.equal(done.state, 'success');

    const numbers = chattyNumbers(received);
    assert.ok(seenBeforeDrop < 150 && numbers.length > seenBeforeDrop, 'lines came before and after the drop');
    assert.deepEqual(numbers, range(150), 'every line once, in order');
    const raw = await (await fetch(chatty.logUrl)).text();
    assert.equal(received.map((l) => `${l}\n`).join(''), raw, 'the events carry the log byte for byte');
    assert.equal(done.offset, Buffer.byteLength(raw));
    assert.equal(states.at(-1), 'success');
    assert.ok(states.includes('running'), `build events while streaming: ${states.join(', ')}`);
  });

  test('each log event id is the byte offset after its lines', async () => {
    const raw = Buffer.from(await (await fetch(chatty.logUrl)).arrayBuffer());
    let offset = 0;
    let events = 0;
    for await (const event of await openEvents(chatty.logUrl)) {
      if (event.event !== 'log') continue;
      events += 1;
      const lines = JSON.parse(event.data) as string[];
      const bytes = Buffer.from(lines.map((l) => `${l}\n`).join(''));
      assert.deepEqual(raw.subarray(offset, offset + bytes.length), bytes);
      offset += bytes.length;
      assert.equal(event.id, String(offset));
    }
    assert.ok(events >= 1);
    assert.equal(offset, raw.length);
  });

  test('resuming at the end of a finished log sends the build and the end, no lines', async () => {
    const size = Buffer.byteLength(await (await fetch(chatty.logUrl)).text());
    const names: string[] = [];
    for await (const event of await openEvents(`${chatty.logUrl}?offset=${size}`)) names.push(event.event);
    assert.deepEqual(names, ['build', 'build', 'end']);
  });

  test('a resume offset that is not a number is a 400', async () => {
    const response = await fetch(chatty.logUrl, { headers: { accept: 'text/event-stream', 'last-event-id': '12; DROP' } });
    assert.equal(response.status, 400);
  });

  test('answers one Range of the plain log with 206 and an unsatisfiable one with 416', async () => {
    const raw = Buffer.from(await (await fetch(chatty.logUrl)).arrayBuffer());
    const whole = await fetch(chatty.logUrl);
    assert.equal(whole.headers.get('accept-ranges'), 'bytes');
    assert.equal(whole.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(whole.headers.get('x-content-type-options'), 'nosniff');
    await whole.arrayBuffer();

    const part = await fetch(chatty.logUrl, { headers: { range: 'bytes=10-99' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 10-99/${raw.length}`);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), raw.subarray(10, 100));

    const suffix = await fetch(chatty.logUrl, { headers: { range: 'bytes=-40' } });
    assert.equal(suffix.status, 206);
    assert.deepEqual(Buffer.from(await suffix.arrayBuffer()), raw.subarray(raw.length - 40));

    const beyond = await fetch(chatty.logUrl, { headers: { range: `bytes=${raw.length + 10}-` } });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers.get('content-range'), `bytes */${raw.length}`);
    await beyond.arrayBuffer();
  });

  test('the lines API answers windows by line number whose offsets match the raw log', async () => {
    const raw = Buffer.from(await (await fetch(chatty.logUrl)).arrayBuffer());
    const all = raw.toString('utf8').split('\n').slice(0, -1);
    const window = (await (await fetch(`${chatty.logUrl}/lines?start=40&count=25`)).json()) as {
      start: number;
      lines: string[];
      total: number;
      startOffset: number;
      endOffset: number;
      complete: boolean;
    };
    assert.equal(window.start, 40);
    assert.deepEqual(window.lines, all.slice(39, 64));
    assert.equal(window.total, all.length);
    assert.equal(window.complete, true);
    assert.equal(raw.subarray(window.startOffset, window.endOffset).toString('utf8'), window.lines.map((l) => `${l}\n`).join(''));
    const tail = (await (await fetch(`${chatty.logUrl}/lines?tail=3`)).json()) as { start: number; lines: string[] };
    assert.deepEqual(tail.lines, all.slice(-3));
    assert.equal(tail.start, all.length - 2);
    assert.equal((await fetch(`${chatty.logUrl}/lines?start=0`)).status, 400);
    assert.equal((await fetch(`${chatty.logUrl}/lines?tail=5&start=3`)).status, 400);
  });

  test('?follow=1 streams the plain log from its first byte until the build ends', async () => {
    const build = await push('hostile');
    const text = await (await fetch(`${build.logUrl}?follow=1`)).text();
    const ended = (await (await fetch(`${f.server.url}/api/builds/${build.id}`)).json()) as BuildView;
    assert.equal(ended.state, 'success', 'follow ended only once the build had');
    assert.equal(text, await (await fetch(build.logUrl)).text());
    assert.match(text, /^\[autobuilder\] build /);
    assert.match(text, /\[autobuilder\] success: /);
  });

  test('unknown builds and unsafe ids are 404', async () => {
    assert.equal((await fetch(`${f.server.url}/api/builds/zzzz-0000/log`)).status, 404);
    assert.equal((await fetch(`${f.server.url}/api/builds/..%2F..%2Fetc/log`)).status, 404);
    assert.equal((await fetch(`${f.server.url}/api/builds/zzzz-0000/log/lines?tail=1`)).status, 404);
  });
});
