import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Build } from '../src/builds/build.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

/** Parses the Prometheus text format into `name{labels}` → value (comments skipped). */
function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

describe('GET /metrics', () => {
  let f: FixtureServer;
  before(async () => {
    f = await startFixtureServer('metrics', { jobConcurrency: 1 });
  });
  after(async () => {
    await f.close();
  });

  const scrape = async (): Promise<Map<string, number>> => {
    const response = await fetch(`${f.server.url}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return parseMetrics(await response.text());
  };
  const value = (metrics: Map<string, number>, name: string): number => {
    const found = metrics.get(name);
    assert.ok(found !== undefined, `${name} is exposed`);
    return found;
  };
  const push = async (branch: string, sha: string) => {
    const response = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: `refs/heads/${branch}`, sha, cloneUrl: f.cloneUrl }),
    });
    assert.equal(response.status, 202);
  };
  const next = (event: 'build.started' | 'build.updated', match: (b: Build) => boolean) =>
    new Promise<Build>((resolve) => {
      const listener = (b: Build) => {
        if (!match(b)) return;
        f.server.events.off(event, listener);
        resolve(b);
      };
      f.server.events.on(event, listener);
    });

  test('count builds by state, the queue, cache answers, status failures, and time each step', async () => {
    const sha = f.repo.head as string;
    const slowStarted = next('build.started', (b) => b.ref === 'refs/heads/slow');
    await push('slow', sha);
    await slowStarted;
    // the only slot is busy: this build waits, once the cache has said it must run
    const mainWaits = next('build.updated', (b) => b.ref === 'refs/heads/main' && b.cacheMiss !== null);
    await push('main', sha);
    await mainWaits;
    await new Promise((r) => setTimeout(r, 50));
    const busy = await scrape();
    assert.equal(value(busy, 'autobuilder_queue_depth'), 1);
    assert.equal(value(busy, 'autobuilder_builds{state="queued"}'), 1);
    assert.equal(value(busy, 'autobuilder_builds{state="running"}'), 1);
    assert.ok(value(busy, 'autobuilder_queue_oldest_age_seconds') > 0);
    await f.waitForBuild((b) => b.ref === 'refs/heads/main');

    f.github.failWith(422);
    await push('fails', sha);
    const failed = await f.waitForBuild((b) => b.ref === 'refs/heads/fails');
    assert.equal(failed.state, 'failure');
    // the failure status is posted just after the build is stored as finished
    for (let i = 0; i < 50 && f.github.failedCount < 2; i++) await new Promise((r) => setTimeout(r, 20));
    f.github.failWith(null);

    const same = await f.repo.commitEmpty('same tree: a cache hit');
    await push('main', same);
    const cached = await f.waitForBuild((b) => b.sha === same);
    assert.equal(cached.cached, true);
    await new Promise((r) => setTimeout(r, 100));

    const m = await scrape();
    assert.equal(value(m, 'autobuilder_builds_total{state="success"}'), 3);
    assert.equal(value(m, 'autobuilder_builds_total{state="failure"}'), 1);
    assert.equal(value(m, 'autobuilder_queue_depth'), 0);
    assert.equal(value(m, 'autobuilder_queue_oldest_age_seconds'), 0);
    assert.equal(value(m, 'autobuilder_builds{state="running"}'), 0);
    assert.equal(value(m, 'autobuilder_cache_requests_total{result="hit"}'), 1);
    assert.equal(value(m, 'autobuilder_cache_requests_total{result="miss"}'), 3);
    assert.equal(value(m, 'autobuilder_cache_requests_total{result="coalesced"}'), 0);
    assert.equal(value(m, 'autobuilder_webhook_to_queued_seconds_count'), 4);
    assert.ok(value(m, 'autobuilder_webhook_to_queued_seconds_sum') > 0);
    assert.equal(value(m, 'autobuilder_queued_to_started_seconds_count'), 3);
    assert.ok(value(m, 'autobuilder_queued_to_started_seconds_sum') >= 1, 'the main build waited for the slow one');
    assert.equal(value(m, 'autobuilder_build_duration_seconds_count{state="success"}'), 2);
    assert.equal(value(m, 'autobuilder_build_duration_seconds_count{state="failure"}'), 1);
    assert.ok(value(m, 'autobuilder_build_duration_seconds_sum{state="success"}') >= 2, 'the slow build sleeps 2 s');
    assert.equal(value(m, 'autobuilder_workspace_prepare_seconds_count'), 3);
    assert.ok(value(m, 'autobuilder_log_broadcast_lag_seconds_count') > 0);
    assert.ok(
      value(m, 'autobuilder_log_broadcast_lag_seconds_bucket{le="0.1"}') === value(m, 'autobuilder_log_broadcast_lag_seconds_count'),
      'lines reach the sockets within 100 ms',
    );
    assert.ok(f.github.failedCount >= 2);
    assert.equal(value(m, 'autobuilder_github_request_failures_total'), f.github.failedCount);
    assert.ok(value(m, 'autobuilder_process_resident_memory_bytes') > 0);
    // builds run here (local mode): no worker metric at all
    assert.deepEqual(
      [...m.keys()].filter((name) => name.startsWith('autobuilder_worker_') || name.startsWith('autobuilder_dispatch_')),
      [],
    );
  });
});
