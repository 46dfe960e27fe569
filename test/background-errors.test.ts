import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { loadConfig } from '../src/config/index.js';
import { createCommitStatusPublisher } from '../src/github/commit-statuses.js';
import { createLogger } from '../src/logger.js';
import { startServer, type RunningServer } from '../src/server.js';
import type { StatusOutbox } from '../src/store/sqlite-status-outbox.js';
import { createSqliteStatusOutbox } from '../src/store/sqlite-status-outbox.js';
import { makeTestDir } from './support/data-dir.js';
import { TEST_IMAGE } from './support/fixture-server.js';
import { createGitRepository } from './support/git-repository.js';
import { startGitHubStandIn, type GitHubStandIn } from './support/github-stand-in.js';

const ROOT = resolve(import.meta.dirname, '..');

/** A logger whose lines the test reads, and the lines so far. */
function capturedLogger(): { log: ReturnType<typeof createLogger>; lines: () => { level: number; msg: string; err?: string }[] } {
  const out = new PassThrough();
  let text = '';
  out.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  const log = createLogger({ level: 'info', destination: out });
  return {
    log,
    lines: () =>
      text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as { level: number; msg: string; err?: string }),
  };
}

/** Records every unhandled rejection of this process while the test runs. */
function watchUnhandledRejections(): { seen: unknown[]; stop(): void } {
  const seen: unknown[] = [];
  const listener = (reason: unknown) => seen.push(reason);
  process.on('unhandledRejection', listener);
  return { seen, stop: () => process.off('unhandledRejection', listener) };
}

const waitFor = async (check: () => boolean, ms = 10_000): Promise<void> => {
  for (const deadline = Date.now() + ms; !check(); await new Promise((r) => setTimeout(r, 50))) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms`);
  }
};

describe('failing background work', () => {
  let server: RunningServer | null = null;
  let github: GitHubStandIn | null = null;
  after(async () => {
    await server?.close();
    await github?.close();
  });

  test('a config status that cannot be written to the outbox is logged, never an unhandled rejection', async () => {
    const dir = await makeTestDir('background-errors');
    const dataDir = join(dir, 'data');
    github = await startGitHubStandIn();
    const configRepo = await createGitRepository(join(dir, 'config'), join(ROOT, 'test', 'fixtures', 'config-repo'));
    // the status outbox refuses every write, as a full or broken disk would
    const dbPath = join(dataDir, 'autobuilder.db');
    await mkdir(dataDir, { recursive: true });
    createSqliteStatusOutbox({ path: dbPath }).close();
    const db = new Database(dbPath);
    db.exec(`CREATE TRIGGER refuse_statuses BEFORE INSERT ON status_outbox BEGIN SELECT RAISE(FAIL, 'status outbox write refused by the test'); END;`);
    db.close();

    const rejections = watchUnhandledRejections();
    const { log, lines } = capturedLogger();
    try {
      const config = loadConfig(
        {
          dataDir,
          listen: { host: '127.0.0.1', port: 0 },
          // a config repository on GitHub: each revision gets an autobuilder/config status
          configRepository: { url: configRepo.url, repository: 'acme/autobuilder-config', branch: 'main', pollSeconds: 0 },
          github: { apiUrl: github.url, token: 'background-token' },
          docker: { defaultImage: TEST_IMAGE, network: 'none' },
        },
        {},
      );
      server = await startServer(config, { log, webhookSecret: 'background secret' });
      await waitFor(() => lines().some((l) => l.msg === 'config status not queued'));
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(rejections.seen, []);
      const logged = lines().find((l) => l.msg === 'config status not queued');
      assert.equal(logged?.level, 50);
      assert.match(logged.err ?? '', /status outbox write refused by the test/);
      // still serving
      assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
    } finally {
      rejections.stop();
    }
  });

  test('an outbox that fails while statuses are being posted is logged, never an unhandled rejection', async () => {
    const rejections = watchUnhandledRejections();
    const { log, lines } = capturedLogger();
    const memory = createSqliteStatusOutbox({ path: ':memory:' });
    // reading what is due fails (the database went away): the post loop must say so, not reject
    const outbox: StatusOutbox = {
      ...memory,
      due: () => {
        throw new Error('status outbox read refused by the test');
      },
    };
    try {
      const statuses = createCommitStatusPublisher({ apiUrl: 'http://127.0.0.1:9', token: 'token', publicUrl: 'http://ci.test', log, outbox });
      await statuses.publishStatus({
        buildId: 'b',
        owner: 'acme',
        repo: 'widget',
        sha: 'a'.repeat(40),
        context: 'autobuilder/x',
        state: 'success',
        targetUrl: 'http://ci.test/x',
        description: 'x',
      });
      await statuses.flush();
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(rejections.seen, []);
      assert.ok(
        lines().some((l) => l.level === 50 && /status outbox read refused by the test/.test(l.err ?? '')),
        JSON.stringify(lines()),
      );
      statuses.close();
    } finally {
      rejections.stop();
    }
  });
});
