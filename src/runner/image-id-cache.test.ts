import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../logger.js';
import { createDockerEngine, type DockerEngine } from './docker-engine.js';
import { createImageIdCache, type ImageIdCache } from './image-id-cache.js';

const run = promisify(execFile);
const SOCKET = '/var/run/docker.sock';
const log = createLogger({ level: 'silent' });

/** The engine, counting the image inspections that reach it. */
function countingEngine(): DockerEngine & { inspections: number } {
  const engine = createDockerEngine({ socketPath: SOCKET });
  const counting = {
    inspections: 0,
    call: (...args: Parameters<DockerEngine['call']>) => {
      if (args[1].startsWith('/images/')) counting.inspections++;
      return engine.call(...args);
    },
    events: engine.events.bind(engine),
  };
  return counting;
}

/** A new empty image (`docker import` of an empty tar), tagged `name`; returns its id. */
async function importImage(name: string): Promise<string> {
  const { stdout } = await run('sh', ['-c', `tar -cf - -T /dev/null | docker import -c 'LABEL made=${randomBytes(4).toString('hex')}' - ${name}`]);
  return stdout.trim();
}

/** Asks twice, the second time once the events subscription is up, so that the answer is kept; returns it. */
async function warm(cache: ImageIdCache, name: string): Promise<string | null> {
  await cache.imageId(name);
  await new Promise((r) => setTimeout(r, 100));
  return cache.imageId(name);
}

/** Polls `read` until it answers `expected` or 2 s pass; returns the last answer. */
async function settle<T>(read: () => Promise<T>, expected: T): Promise<T> {
  let last = await read();
  for (const deadline = Date.now() + 2000; last !== expected && Date.now() < deadline; last = await read()) await new Promise((r) => setTimeout(r, 10));
  return last;
}

describe('image id cache (real Docker engine)', () => {
  const repo = `autobuilder-test/image-ids-${randomBytes(4).toString('hex')}`;
  const name = `${repo}:latest`;
  let first = '';
  let second = '';
  before(async () => {
    second = await importImage(`${repo}:second`);
    first = await importImage(name);
  });
  after(async () => {
    await run('sh', ['-c', `docker rmi -f ${name} ${repo}:second >/dev/null 2>&1 || true`]);
  });

  test('asks the engine once for an image asked for again', async () => {
    const engine = countingEngine();
    const cache = createImageIdCache({ engine, log });
    try {
      // the first answer comes before the events subscription is up, so it is not kept
      assert.equal(await warm(cache, name), first);
      const asked = engine.inspections;
      for (let i = 0; i < 5; i++) assert.equal(await cache.imageId(name), first);
      assert.equal(engine.inspections, asked);
    } finally {
      cache.close();
    }
  });

  test('answers the new id once the name is tagged onto another image', async () => {
    const cache = createImageIdCache({ engine: createDockerEngine({ socketPath: SOCKET }), log });
    try {
      assert.equal(await warm(cache, name), first);
      await run('docker', ['tag', second, name]);
      assert.equal(await settle(() => cache.imageId(name), second), second);
      await run('docker', ['tag', first, name]);
      assert.equal(await settle(() => cache.imageId(name), first), first);
    } finally {
      cache.close();
    }
  });

  test('answers null once the image is removed, and the id again once it is back', async () => {
    const cache = createImageIdCache({ engine: createDockerEngine({ socketPath: SOCKET }), log });
    const gone = `${repo}:gone`;
    try {
      await run('docker', ['tag', first, gone]);
      assert.equal(await warm(cache, gone), first);
      await run('docker', ['rmi', gone]);
      assert.equal(await settle(() => cache.imageId(gone), null), null);
      await run('docker', ['tag', second, gone]);
      assert.equal(await settle(() => cache.imageId(gone), second), second);
    } finally {
      cache.close();
      await run('sh', ['-c', `docker rmi ${gone} >/dev/null 2>&1 || true`]);
    }
  });

  test('asks again once an answer is older than the TTL', async () => {
    const engine = countingEngine();
    let at = 0;
    const cache = createImageIdCache({ engine, log, ttlMs: 1000, now: () => at });
    try {
      await warm(cache, name);
      const asked = engine.inspections;
      at += 999;
      await cache.imageId(name);
      assert.equal(engine.inspections, asked);
      at += 1;
      await cache.imageId(name);
      assert.equal(engine.inspections, asked + 1);
    } finally {
      cache.close();
    }
  });

  test('keeps nothing while the events cannot be followed', async () => {
    const engine = countingEngine();
    // an engine whose events stream is refused: every answer may be stale, so none is kept
    const blind: DockerEngine = {
      call: (...args) => engine.call(...args),
      events: (_filters, _onEvent, onEnd) => {
        const ready = Promise.reject(new Error('refused'));
        ready.catch(() => undefined);
        setImmediate(() => onEnd(new Error('refused')));
        return { ready, close: () => undefined };
      },
    };
    const cache = createImageIdCache({ engine: blind, log });
    try {
      for (let i = 0; i < 3; i++) {
        assert.equal(await cache.imageId(name), first);
        await new Promise((r) => setImmediate(r));
      }
      assert.equal(engine.inspections, 3);
    } finally {
      cache.close();
    }
  });

  test('answers null for a name the engine does not have or that is no image reference', async () => {
    const cache = createImageIdCache({ engine: createDockerEngine({ socketPath: SOCKET }), log });
    try {
      assert.equal(await cache.imageId(`${repo}:missing`), null);
      assert.equal(await cache.imageId('../../containers/json?all=1'), null);
    } finally {
      cache.close();
    }
  });

  test('throws CONTAINER_FAILED when the engine cannot be reached', async () => {
    const cache = createImageIdCache({ engine: createDockerEngine({ socketPath: '/nonexistent/docker.sock' }), log });
    try {
      await assert.rejects(cache.imageId(name), { code: 'CONTAINER_FAILED' });
    } finally {
      cache.close();
    }
  });
});
