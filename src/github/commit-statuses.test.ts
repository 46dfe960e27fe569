import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Build, BuildState } from '../builds/build.js';
import { buildRecord } from '../../test/support/build-record.js';
import { createLogger } from '../logger.js';
import { createSqliteStatusOutbox } from '../store/sqlite-status-outbox.js';
import { createCommitStatusPublisher, MAX_DESCRIPTION, toCommitStatusState, toDescription, toRetryDelay } from './commit-statuses.js';

const log = createLogger({ level: 'silent' });

function build(changes: Partial<Build> = {}): Build {
  return buildRecord({
    sha: '0123456789abcdef0123456789abcdef01234567',
    definition: 'hello',
    context: 'autobuilder/hello',
    description: 'Built in 1.0 s',
    ...changes,
  });
}

describe('toCommitStatusState', () => {
  test('maps every build state onto a commit status state', () => {
    const expected: Record<BuildState, string> = {
      queued: 'pending',
      running: 'pending',
      success: 'success',
      failure: 'failure',
      error: 'error',
      cancelled: 'error',
    };
    for (const [state, status] of Object.entries(expected)) {
      assert.equal(toCommitStatusState(state as BuildState), status, state);
    }
  });
});

describe('toDescription', () => {
  test('cuts a 500-character text to exactly 140 characters ending in an ellipsis', () => {
    const description = toDescription('x'.repeat(500));
    assert.equal(MAX_DESCRIPTION, 140);
    assert.equal(description.length, 140);
    assert.ok(description.endsWith('…'));
    assert.equal(description.slice(0, 139), 'x'.repeat(139));
  });

  test('keeps a short text as it is', () => {
    assert.equal(toDescription('Built in 1.2 s'), 'Built in 1.2 s');
  });

  test('keeps a text of exactly 140 characters whole', () => {
    const text = 'y'.repeat(140);
    assert.equal(toDescription(text), text);
  });

  test('flattens newlines and runs of white space', () => {
    assert.equal(toDescription('  exited\n\twith   code 1  '), 'exited with code 1');
  });
});

describe('createCommitStatusPublisher', () => {
  test('without a token, publish resolves and makes no request', async () => {
    let calls = 0;
    const fetch: typeof globalThis.fetch = async () => {
      calls++;
      assert.fail('fetch must not be called without a token');
    };
    const publisher = createCommitStatusPublisher({ apiUrl: 'https://api.github.com', token: undefined, publicUrl: 'http://ci.test', log, fetch });
    await publisher.publish(build());
    await publisher.publish(build({ state: 'failure' }));
    assert.equal(calls, 0);
  });

  test('with a token, posts the state, context, description and target URL to the commit', async () => {
    const requests: { url: string; method: string | undefined; body: unknown; auth: string | null }[] = [];
    const fetch: typeof globalThis.fetch = async (input, init) => {
      const headers = new Headers(init?.headers);
      requests.push({
        url: input instanceof Request ? input.url : String(input),
        method: init?.method,
        body: JSON.parse(typeof init?.body === 'string' ? init.body : 'null') as unknown,
        auth: headers.get('authorization'),
      });
      return new Response(JSON.stringify({ id: 1, state: 'success' }), { status: 201, headers: { 'content-type': 'application/json' } });
    };
    const publisher = createCommitStatusPublisher({ apiUrl: 'http://github.test/api/v3/', token: 'secret-token', publicUrl: 'http://ci.test/', log, fetch });
    await publisher.publish(build({ state: 'running', description: 'Running' }));
    await publisher.flush();
    publisher.close();
    assert.deepEqual(requests, [
      {
        url: 'http://github.test/api/v3/repos/acme/widget/statuses/0123456789abcdef0123456789abcdef01234567',
        method: 'POST',
        body: { state: 'pending', context: 'autobuilder/hello', target_url: 'http://ci.test/builds/mfx1k2p3-9f3a2c1d', description: 'Running' },
        auth: 'token secret-token',
      },
    ]);
  });

  test('resolves when GitHub answers with an error or the network fails', async () => {
    const answers = [
      async () => new Response('{"message":"Bad credentials"}', { status: 401, headers: { 'content-type': 'application/json' } }),
      async () => Promise.reject(new TypeError('fetch failed')),
    ];
    for (const answer of answers) {
      let calls = 0;
      const fetch: typeof globalThis.fetch = async () => {
        calls++;
        return answer();
      };
      const publisher = createCommitStatusPublisher({ apiUrl: 'http://github.test', token: 't', publicUrl: 'http://ci.test', log, fetch });
      await publisher.publish(build());
      await publisher.flush();
      publisher.close();
      assert.ok(calls >= 1);
    }
  });

  test('gives up a status GitHub refuses for good (422) after one attempt', async () => {
    let calls = 0;
    const outbox = createSqliteStatusOutbox({ path: ':memory:' });
    const size = () => outbox.size();
    const fetch: typeof globalThis.fetch = async () => {
      calls++;
      return new Response('{"message":"Validation Failed"}', { status: 422, headers: { 'content-type': 'application/json' } });
    };
    const publisher = createCommitStatusPublisher({ apiUrl: 'http://github.test', token: 't', publicUrl: 'http://ci.test', log, fetch, outbox });
    await publisher.publish(build());
    await publisher.flush();
    assert.equal(calls, 1);
    assert.equal(size(), 0);
    publisher.close();
  });

  test('keeps a status GitHub could not take and posts it once GitHub is back', async () => {
    let calls = 0;
    let up = false;
    const outbox = createSqliteStatusOutbox({ path: ':memory:' });
    const fetch: typeof globalThis.fetch = async () => {
      calls++;
      return up
        ? new Response('{"id":1}', { status: 201, headers: { 'content-type': 'application/json' } })
        : new Response('{"message":"Server Error"}', { status: 502, headers: { 'content-type': 'application/json' } });
    };
    const publisher = createCommitStatusPublisher({ apiUrl: 'http://github.test', token: 't', publicUrl: 'http://ci.test', log, fetch, outbox });
    await publisher.publish(build());
    await publisher.flush();
    assert.equal(calls, 2, 'the retry plugin tried twice');
    assert.equal(outbox.size(), 1, 'still queued');
    up = true;
    for (let i = 0; i < 60 && outbox.size() > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(outbox.size(), 0, 'posted on the next attempt');
    assert.equal(calls, 3);
    publisher.close();
  });
});

describe('toRetryDelay', () => {
  test('starts at a second, doubles, and stops at a minute', () => {
    assert.deepEqual([0, 1, 2, 5, 6, 20].map(toRetryDelay), [1000, 2000, 4000, 32_000, 60_000, 60_000]);
  });
});
