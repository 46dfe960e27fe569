import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, test } from 'node:test';
import { createSqliteBuildStore } from '../src/store/sqlite-build-store.js';
import { makeTestDir } from './support/data-dir.js';
import { TEST_IMAGE } from './support/fixture-server.js';
import { createGitRepository } from './support/git-repository.js';
import { startGitHubStandIn, type GitHubStandIn, type RecordedRequest } from './support/github-stand-in.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

const ROOT = resolve(import.meta.dirname, '..');
const SECRET = 'shutdown secret';

/** One JSON line the server logged. */
interface LogLine {
  level: number;
  msg: string;
  signal?: string;
}

describe('signals while the server stops', () => {
  let child: ChildProcess | null = null;
  let github: GitHubStandIn | null = null;
  after(async () => {
    if (child !== null && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child?.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    }
    await github?.close();
  });

  test('a second SIGTERM does not end the process before the running build has its final state and commit status', async () => {
    const dir = await makeTestDir('shutdown');
    github = await startGitHubStandIn();
    const widget = await createGitRepository(join(dir, 'widget'), join(ROOT, 'test', 'fixtures', 'projects', 'widget'));
    const cloneUrl = 'https://github.com/acme/widget.git';
    const configPath = join(dir, 'config.mjs');
    await writeFile(
      configPath,
      `export default ${JSON.stringify({
        dataDir: join(dir, 'data'),
        listen: { host: '127.0.0.1', port: 0 },
        configRepository: { path: join(ROOT, 'test', 'fixtures', 'config-repo') },
        github: { apiUrl: github.url, token: 'shutdown-token', webhookSecret: SECRET },
        docker: { defaultImage: TEST_IMAGE, network: 'none' },
        cloneUrlRewrites: [{ from: cloneUrl, to: widget.url }],
        logLevel: 'info',
      })};\n`,
    );
    // the real entry point: its signal handling is what is tested
    child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'main.ts')], {
      cwd: ROOT,
      env: { ...process.env, AUTOBUILDER_CONFIG: configPath },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const server = child;
    const lines: LogLine[] = [];
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((ok) => server.once('exit', (code, signal) => ok({ code, signal })));
    const url = await new Promise<string>((ok, fail) => {
      createInterface({ input: server.stdout as NodeJS.ReadableStream }).on('line', (text) => {
        const line = JSON.parse(text) as LogLine & { url?: string };
        lines.push(line);
        if (line.msg === 'listening' && line.url !== undefined) ok(line.url);
      });
      void exited.then(({ code }) => fail(new Error(`the server exited with ${code}`)));
    });

    // the slow build (sleeps 2 s) of the `slow` branch
    const sha = widget.head as string;
    const push = await deliver(url, {
      event: 'push',
      secret: SECRET,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/slow', sha, cloneUrl }),
    });
    assert.equal(push.status, 202);
    const statusesOf = (state: string) =>
      github?.requests.filter((r) => r.operationId === 'repos/create-commit-status' && (r.body as { state?: string }).state === state) ?? [];
    for (const deadline = Date.now() + 30_000; ; await new Promise((r) => setTimeout(r, 50))) {
      const { builds } = (await (await fetch(`${url}/api/builds?repo=acme/widget`)).json()) as { builds: { state: string }[] };
      if (builds.some((b) => b.state === 'running')) break;
      assert.ok(Date.now() < deadline, 'the build runs within 30 s');
    }

    server.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(server.exitCode, null, 'the first SIGTERM waits for the running build');
    server.kill('SIGTERM');
    const { code, signal } = await exited;

    assert.deepEqual({ code, signal }, { code: 0, signal: null }, 'the process ends by itself, not by the second signal');
    assert.ok(
      lines.some((l) => l.msg === 'already stopping; builds get their final status first' && l.signal === 'SIGTERM'),
      'the second signal is logged',
    );
    const finals = statusesOf('success');
    assert.equal(finals.length, 1, `one final commit status; recorded: ${JSON.stringify(github.requests.map((r) => r.body))}`);
    const [final] = finals as [RecordedRequest];
    assert.equal(final.params['sha'], sha);
    assert.equal((final.body as { context?: string }).context, 'autobuilder/slow');

    // the stored state: the next start on the same data directory reads it back
    const store = createSqliteBuildStore({ path: join(dir, 'data', 'autobuilder.db') });
    try {
      assert.deepEqual(
        store.list({ repo: 'acme/widget' }).map((b) => ({ state: b.state, sha: b.sha })),
        [{ state: 'success', sha }],
      );
    } finally {
      store.close();
    }
  });
});
