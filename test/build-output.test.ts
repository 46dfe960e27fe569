import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BuildView } from '../src/http/build-view.js';
import { readEvents } from './support/event-stream.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, examplePayloads, pushPayload } from './support/webhook-delivery.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/**
 * Longest line a build's output makes on disk: 64 KiB, plus the end of the piece before
 * that the secret masker may carry over (at most the longest secret the server knows).
 */
const MAX_LINE = 64 * KiB + 64;

/** Pushes `branch` of acme/widget at its head and waits for the build to end. */
async function build(f: FixtureServer, branch: string): Promise<BuildView> {
  const sha = f.repo.head as string;
  const response = await deliver(f.server.url, {
    event: 'push',
    secret: f.secret,
    payload: pushPayload({ owner: 'acme', repo: 'widget', ref: `refs/heads/${branch}`, sha, cloneUrl: f.cloneUrl }),
  });
  assert.equal(response.status, 202, JSON.stringify(response.body));
  return f.waitForBuild((b) => b.ref === `refs/heads/${branch}` && b.sha === sha, 120_000);
}

/** The raw log file of a build. */
const rawLog = (f: FixtureServer, id: string) => readFile(join(f.dir, 'data', 'logs', `${id}.log`));

/** A signed ping, as GitHub sends one: the server still answers webhooks. */
async function ping(f: FixtureServer): Promise<number> {
  const [payload] = examplePayloads('ping');
  assert.ok(payload);
  return (await deliver(f.server.url, { event: 'ping', secret: f.secret, payload })).status;
}

describe('a build that prints without bounds: lines cut, log capped, readers linear', () => {
  let f: FixtureServer;
  let flood: BuildView;

  before(async () => {
    f = await startFixtureServer('build-output', { builds: { maxLogBytes: 2 * MiB } });
  });
  after(async () => {
    await f.close();
  });

  test('8 MiB without a newline are cut into lines of 64 KiB on disk', async () => {
    // over the 2 MiB cap as well: the cut lines count against it like any others
    flood = await build(f, 'flood');
    const log = await rawLog(f, flood.id);
    const lines = log.toString('utf8').split('\n');
    const longest = Math.max(...lines.map((l) => Buffer.byteLength(l)));
    assert.ok(longest <= MAX_LINE, `the longest line on disk has ${longest} bytes`);
    const floodLines = lines.filter((l) => /^x+$/.test(l));
    assert.ok(floodLines.length >= 30, `the line was cut into ${floodLines.length} lines of about 64 KiB`);
    assert.ok(
      floodLines.every((l) => l.length >= 64 * KiB - 64),
      'each piece is a full 64 KiB but for what the masker carried over',
    );
  });

  test('a build that passes builds.maxLogBytes is stopped: failure, the reason in its description, the cut marked', async () => {
    assert.equal(flood.state, 'failure', flood.description ?? '');
    assert.match(flood.description ?? '', /log limit of 2 MiB \(builds\.maxLogBytes\)/);
    const log = await rawLog(f, flood.id);
    assert.ok(log.length <= 2 * MiB + 4 * KiB, `the log holds ${log.length} bytes`);
    const text = log.toString('utf8');
    assert.match(text, /\[autobuilder\] log cut at \d+ bytes: the build printed more than builds\.maxLogBytes/);
    assert.doesNotMatch(text, /after the flood/, 'nothing the build printed after the cut is kept');
    assert.equal(await ping(f), 200);
  });

  test('4 MiB of 1 KiB lines pass the same cap the same way', async () => {
    const lines = await build(f, 'flood-lines');
    assert.equal(lines.state, 'failure', lines.description ?? '');
    assert.match(lines.description ?? '', /log limit/);
    const log = await rawLog(f, lines.id);
    assert.ok(log.length <= 2 * MiB + 4 * KiB && log.length > 2 * MiB - 4 * KiB, `the log holds ${log.length} bytes`);
  });

  test('an SSE reader of a log whose one line is 16 MiB gets that line cut at 64 KiB with a marker, and the exact end offset', async () => {
    // a log written before lines were cut (or by another writer): one 16 MiB line
    const path = join(f.dir, 'data', 'logs', `${flood.id}.log`);
    await writeFile(path, Buffer.concat([Buffer.from('first\n'), Buffer.alloc(16 * MiB, 'y'), Buffer.from('\nlast\n')]));
    const response = await fetch(`${f.server.url}/api/builds/${flood.id}/log`, { headers: { accept: 'text/event-stream' } });
    assert.equal(response.status, 200);
    assert.ok(response.body);
    const received: string[] = [];
    let end: { offset: number } | null = null;
    for await (const event of readEvents(response.body)) {
      if (event.event === 'log') received.push(...(JSON.parse(event.data) as string[]));
      if (event.event === 'end') {
        end = JSON.parse(event.data) as { offset: number };
        break;
      }
    }
    assert.equal(received.length, 3);
    assert.equal(received[0], 'first');
    assert.equal(received[1], `${'y'.repeat(64 * KiB)} … [${16 * MiB - 64 * KiB} more bytes in the raw log]`);
    assert.equal(received[2], 'last');
    assert.equal(end?.offset, 6 + 16 * MiB + 6);
  });
});

describe('a build that prints a long line within the cap', () => {
  let f: FixtureServer;

  before(async () => {
    f = await startFixtureServer('build-output-ok');
  });
  after(async () => {
    await f.close();
  });

  test('succeeds with every byte of its output in the log, lines of at most 64 KiB', async () => {
    const flood = await build(f, 'flood');
    assert.equal(flood.state, 'success', flood.description ?? '');
    const text = (await rawLog(f, flood.id)).toString('utf8');
    const lines = text.split('\n');
    assert.ok(lines.every((l) => Buffer.byteLength(l) <= MAX_LINE));
    assert.equal(lines.filter((l) => /^x+$/.test(l)).join('').length, 8 * MiB);
    assert.match(text, /\nafter the flood\n/);
  });
});
