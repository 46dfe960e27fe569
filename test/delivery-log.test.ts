import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../src/config/index.js';
import { createLogger } from '../src/logger.js';
import { startServer, type RunningServer } from '../src/server.js';
import { makeTestDir } from './support/data-dir.js';
import { TEST_IMAGE } from './support/fixture-server.js';
import { createGitRepository } from './support/git-repository.js';
import { startGitHubStandIn, type GitHubStandIn } from './support/github-stand-in.js';
import { deliver, examplePayloads, pushPayload } from './support/webhook-delivery.js';

const FIXTURES = resolve(import.meta.dirname, 'fixtures');
const SECRET = 'delivery log secret';
const INFO = 30;

/** One JSON line of the app log. */
interface LogLine {
  level: number;
  msg: string;
  deliveryId?: string;
  buildId?: string;
  [field: string]: unknown;
}

describe('app log of webhook deliveries at info', () => {
  let server: RunningServer;
  let github: GitHubStandIn;
  let sha: string;
  const cloneUrl = 'https://github.com/acme/widget.git';
  const lines: LogLine[] = [];

  before(async () => {
    const dir = await makeTestDir('delivery-log');
    github = await startGitHubStandIn();
    const repo = await createGitRepository(join(dir, 'widget'), join(FIXTURES, 'projects', 'widget'));
    sha = repo.head as string;
    const out = new PassThrough();
    let rest = '';
    out.on('data', (chunk: Buffer) => {
      const text = rest + chunk.toString('utf8');
      const parts = text.split('\n');
      rest = parts.pop() ?? '';
      for (const part of parts) if (part !== '') lines.push(JSON.parse(part) as LogLine);
    });
    const config = loadConfig(
      {
        dataDir: join(dir, 'data'),
        listen: { host: '127.0.0.1', port: 0 },
        configRepository: { path: join(FIXTURES, 'config-repo') },
        github: { apiUrl: github.url, token: 'delivery-log-token' },
        docker: { defaultImage: TEST_IMAGE, network: 'none' },
        cloneUrlRewrites: [{ from: cloneUrl, to: repo.url }],
      },
      {},
    );
    server = await startServer(config, { log: createLogger({ level: 'info', destination: out }), webhookSecret: SECRET });
  });
  after(async () => {
    await server.close();
    await github.close();
  });

  /** The info lines about delivery `id` that are not about one of its builds, once `settled` says they are all in. */
  const deliveryLines = async (id: string, settled: (seen: LogLine[]) => boolean): Promise<LogLine[]> => {
    const of = () => lines.filter((l) => l.deliveryId === id && l.level === INFO && l.buildId === undefined);
    for (const deadline = Date.now() + 30_000; !settled(of()) && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 20));
    // a little longer: a second line would come now
    await new Promise((r) => setTimeout(r, 200));
    return of();
  };
  const handled = (seen: LogLine[]) => seen.some((l) => l.msg === 'delivery handled');

  test('a ping writes one line', async () => {
    const response = await deliver(server.url, { event: 'ping', payload: examplePayloads('ping')[0] as Record<string, unknown>, secret: SECRET });
    assert.equal(response.status, 200);
    const seen = await deliveryLines(response.deliveryId, handled);
    assert.equal(seen.length, 1, JSON.stringify(seen));
    assert.deepEqual(
      { msg: seen[0]?.msg, event: seen[0]?.['event'], outcome: seen[0]?.['outcome'] },
      { msg: 'delivery handled', event: 'ping', outcome: 'ping' },
    );
    assert.equal(typeof seen[0]?.['ms'], 'number');
  });

  test('an ignored push (its branch deleted) writes one line with the repository, ref and reason', async () => {
    const payload = { ...pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/gone', sha, cloneUrl }), deleted: true };
    const response = await deliver(server.url, { event: 'push', payload, secret: SECRET });
    assert.equal(response.status, 200);
    const seen = await deliveryLines(response.deliveryId, handled);
    assert.equal(seen.length, 1, JSON.stringify(seen));
    const [line] = seen as [LogLine];
    assert.equal(line.msg, 'delivery handled');
    assert.deepEqual([line['event'], line['repo'], line['ref'], line['outcome']], ['push', 'acme/widget', 'refs/heads/gone', 'ignored']);
    assert.equal(typeof line['reason'], 'string');
    assert.equal(typeof line['ms'], 'number');
  });

  test('a push that builds writes one line, once its builds are decided, naming them', async () => {
    const payload = pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl });
    const response = await deliver(server.url, { event: 'push', payload, secret: SECRET });
    assert.equal(response.status, 202);
    const seen = await deliveryLines(response.deliveryId, handled);
    assert.equal(seen.length, 1, JSON.stringify(seen));
    const [line] = seen as [LogLine];
    assert.deepEqual(
      [line.msg, line['event'], line['repo'], line['ref'], line['outcome']],
      ['delivery handled', 'push', 'acme/widget', 'refs/heads/main', 'built'],
    );
    assert.equal((line['builds'] as string[]).length, 1);
    assert.equal(typeof line['ms'], 'number');

    // the same delivery again: one line, a duplicate
    const again = await deliver(server.url, { event: 'push', payload, secret: SECRET, deliveryId: response.deliveryId });
    assert.equal(again.status, 200);
    const both = await deliveryLines(response.deliveryId, (l) => l.length >= 2);
    assert.deepEqual(
      both.map((l) => l['outcome']),
      ['built', 'duplicate'],
    );
  });

  test('a push nothing builds writes one line with the reason', async () => {
    const payload = pushPayload({ owner: 'nobody', repo: 'nothing', ref: 'refs/heads/main', sha, cloneUrl });
    const response = await deliver(server.url, { event: 'push', payload, secret: SECRET });
    assert.equal(response.status, 202);
    const seen = await deliveryLines(response.deliveryId, handled);
    assert.deepEqual(
      seen.map((l) => [l.msg, l['repo'], l['outcome']]),
      [['delivery handled', 'nobody/nothing', 'not built']],
    );
  });
});
