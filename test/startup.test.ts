import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, test } from 'node:test';
import { sign } from '@octokit/webhooks-methods';
import { makeTestDir } from './support/data-dir.js';
import { TEST_IMAGE } from './support/fixture-server.js';
import { createGitRepository } from './support/git-repository.js';
import { startGitHubStandIn, type GitHubStandIn } from './support/github-stand-in.js';
import { deliver, examplePayloads, pushPayload } from './support/webhook-delivery.js';

const ROOT = resolve(import.meta.dirname, '..');
const SECRET = 'start-up secret';
/** the longest a request may take to be answered, start-up or not */
const ANSWER_WITHIN_MS = 1000;

/** A free TCP port on 127.0.0.1 (the server must be reachable at a known address before it listens). */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((ok) => probe.listen(0, '127.0.0.1', () => ok()));
  const address = probe.address();
  await new Promise((ok) => probe.close(ok));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** What one request during the start got: an HTTP answer, a refused connection, or nothing in time. */
interface Outcome {
  kind: 'healthz' | 'ping';
  sentAt: number;
  ms: number;
  status: number | 'refused' | 'no answer';
  retryAfter: string | null;
  code: string | null;
}

describe('answers during the start', () => {
  let child: ChildProcess | null = null;
  let github: GitHubStandIn | null = null;
  after(async () => {
    if (child !== null && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child?.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    await github?.close();
  });

  test('every request sent while the server starts gets 503 with Retry-After or its answer within 1 s, and a push taken in then is built', async () => {
    const dir = await makeTestDir('startup');
    github = await startGitHubStandIn();
    const widget = await createGitRepository(join(dir, 'widget'), join(ROOT, 'test', 'fixtures', 'projects', 'widget'));
    const configRepo = await createGitRepository(join(dir, 'config'), join(ROOT, 'test', 'fixtures', 'config-repo'));
    const cloneUrl = 'https://github.com/acme/widget.git';

    // a slow start: the config repository is fetched over "ssh" through a command that waits
    // for the test to let it go, then serves the local repository
    const home = join(dir, 'home');
    const release = join(dir, 'release-the-fetch');
    await mkdir(home, { recursive: true });
    const ssh = join(home, 'slow-ssh.sh');
    await writeFile(ssh, `#!/bin/sh\nwhile [ ! -e '${release}' ]; do sleep 0.05; done\nfor last; do :; done\nexec sh -c "$last"\n`);
    await chmod(ssh, 0o755);
    await writeFile(join(home, '.gitconfig'), `[core]\n\tsshCommand = ${ssh}\n[ssh]\n\tvariant = simple\n`);

    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const configPath = join(dir, 'config.json');
    await writeFile(
      configPath,
      JSON.stringify({
        dataDir: join(dir, 'data'),
        listen: { host: '127.0.0.1', port },
        configRepository: { url: `ssh://slow-config${configRepo.dir}`, branch: 'main', pollSeconds: 0 },
        github: { apiUrl: github.url, token: 'start-up-token' },
        docker: { defaultImage: TEST_IMAGE, network: 'none' },
        cloneUrlRewrites: [{ from: cloneUrl, to: widget.url }],
        logLevel: 'silent',
      }),
    );

    const outcomes: Outcome[] = [];
    const inFlight: Promise<void>[] = [];
    const pingBody = JSON.stringify(examplePayloads('ping')[0]);
    const pingSignature = await sign(SECRET, pingBody);
    const send = (kind: Outcome['kind']): void => {
      const sentAt = performance.now();
      const request =
        kind === 'healthz'
          ? fetch(`${base}/healthz`, { signal: AbortSignal.timeout(5000) })
          : fetch(`${base}/hooks/github`, {
              method: 'POST',
              headers: { 'content-type': 'application/json', 'x-github-event': 'ping', 'x-hub-signature-256': pingSignature },
              body: pingBody,
              signal: AbortSignal.timeout(5000),
            });
      inFlight.push(
        request.then(
          async (response) => {
            const body = (await response.json().catch(() => null)) as { error?: { code: string } } | null;
            outcomes.push({
              kind,
              sentAt,
              ms: performance.now() - sentAt,
              status: response.status,
              retryAfter: response.headers.get('retry-after'),
              code: body?.error?.code ?? null,
            });
          },
          (err: unknown) => {
            const cause = (err as { cause?: { code?: string } }).cause;
            const status = cause?.code === 'ECONNREFUSED' ? 'refused' : 'no answer';
            outcomes.push({ kind, sentAt, ms: performance.now() - sentAt, status, retryAfter: null, code: null });
          },
        ),
      );
    };
    // from before the start until after it: a /healthz and a signed ping every 50 ms
    const ticker = setInterval(() => {
      send('healthz');
      send('ping');
    }, 50);
    const spawnedAt = performance.now();
    child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'server-process.ts'), configPath, SECRET], {
      cwd: ROOT,
      env: { ...process.env, HOME: home },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const started = child;
    const ready = new Promise<number>((ok, fail) => {
      createInterface({ input: started.stdout as NodeJS.ReadableStream }).on('line', (line) => line.startsWith('READY ') && ok(performance.now()));
      started.once('exit', (code) => fail(new Error(`the server exited with ${code}`)));
    });

    // hold the start until webhooks are taken in and /healthz said 503 a few times (or 10 s)
    let push: Awaited<ReturnType<typeof deliver>> | null = null;
    const sha = widget.head as string;
    for (const deadline = performance.now() + 10_000; performance.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
      if (push === null && outcomes.some((o) => o.kind === 'ping' && o.status === 200)) {
        push = await deliver(base, {
          event: 'push',
          secret: SECRET,
          payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl }),
        });
      }
      if (push !== null && outcomes.filter((o) => o.kind === 'healthz' && o.status === 503).length >= 5) break;
    }
    const releasedAt = performance.now();
    await writeFile(release, '');
    const readyAt = await ready;
    // a little past the start, then every request must have settled
    await new Promise((r) => setTimeout(r, 300));
    clearInterval(ticker);
    await Promise.all(inFlight);
    assert.ok(existsSync(release));

    const answered = outcomes.filter((o) => typeof o.status === 'number');
    const slow = outcomes.filter((o) => o.status === 'no answer' || o.ms > ANSWER_WITHIN_MS);
    const starting = answered.filter((o) => o.status === 503);
    const summary = `${outcomes.length} requests over ${((readyAt - spawnedAt) / 1000).toFixed(1)} s of start (${((readyAt - releasedAt) / 1000).toFixed(1)} s after the release): ${answered.length} answered (${starting.length} with 503), ${outcomes.filter((o) => o.status === 'refused').length} refused before listening, ${slow.length} slow or unanswered; slowest ${Math.max(...outcomes.map((o) => o.ms)).toFixed(0)} ms`;
    console.log(`  ${summary}`);
    assert.deepEqual(slow, [], summary);
    assert.ok(starting.length >= 5, `the test saw the start: ${summary}`);
    for (const o of starting) {
      assert.equal(o.retryAfter, '2');
      assert.equal(o.code, 'STARTING');
    }
    for (const o of answered) assert.ok([200, 503].includes(o.status as number), `healthz and ping answer 200 or 503, not ${o.status}`);
    assert.ok(
      answered.some((o) => o.kind === 'ping' && o.status === 200 && o.sentAt < releasedAt),
      'webhooks are taken in during the start',
    );
    assert.ok(
      answered.some((o) => o.kind === 'healthz' && o.status === 200 && o.sentAt > readyAt),
      '/healthz answers 200 once started',
    );

    // the push taken in while the config was still being fetched is built once started
    assert.equal(push?.status, 202, JSON.stringify(push?.body));
    let build: { state: string; deliveryId: string | null } | undefined;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
      const { builds } = (await (await fetch(`${base}/api/builds?repo=acme/widget`)).json()) as {
        builds: { state: string; sha: string; deliveryId: string | null }[];
      };
      build = builds.find((b) => b.sha === sha && !['queued', 'running'].includes(b.state));
      if (build !== undefined) break;
    }
    assert.equal(build?.state, 'success');
    assert.equal(build.deliveryId, push.deliveryId);
  });
});
