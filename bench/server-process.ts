/**
 * A server in a process of its own, for the benchmarks whose load must not share the
 * server's event loop (load) or that kill it (chaos). Run as a script it starts autobuilder
 * with the JSON config in argv[2] and the webhook secret in argv[3], then prints
 * `READY <url>`; SIGTERM closes it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { makeTestDir } from '../test/support/data-dir.js';
import { createGitRepository, type GitRepository } from '../test/support/git-repository.js';

const FIXTURES = resolve(import.meta.dirname, '..', 'test', 'fixtures');

/**
 * A data directory for a server process, the test fixtures' `acme/widget` project in a new
 * git repository, and the server's config at `configPath`: the fixture config repository,
 * busybox builds without network, `acme/widget`'s clone URL rewritten to the local
 * repository, `settings` on top.
 */
export async function prepareFixtureProject(
  name: string,
  settings: Record<string, unknown>,
): Promise<{ dir: string; dataDir: string; configPath: string; cloneUrl: string; repo: GitRepository & { head: string | null } }> {
  const dir = await makeTestDir(name);
  const dataDir = join(dir, 'data');
  const repo = await createGitRepository(join(dir, 'widget'), join(FIXTURES, 'projects', 'widget'));
  const cloneUrl = 'https://github.com/acme/widget.git';
  const configPath = join(dir, 'config.json');
  const config = {
    dataDir,
    listen: { host: '127.0.0.1', port: 0 },
    configRepository: { path: join(FIXTURES, 'config-repo') },
    docker: { defaultImage: 'autobuilder/busybox:latest', network: 'none' },
    cloneUrlRewrites: [{ from: cloneUrl, to: repo.url }],
    logLevel: process.env['BENCH_SERVER_LOG_LEVEL'] ?? 'silent',
    ...settings,
  };
  await writeFile(configPath, JSON.stringify(config));
  return { dir, dataDir, configPath, cloneUrl, repo };
}

/** Starts this file as a child process; resolves with the child and its URL once it listens. */
export function startServerProcess(configPath: string, secret: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    [
      ...(process.env['AUTOBUILDER_PROFILE'] ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof2'] : []),
      '--import',
      'tsx',
      fileURLToPath(import.meta.url),
      configPath,
      secret,
    ],
    {
      cwd: resolve(import.meta.dirname, '..'),
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  return new Promise((ok, fail) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => line.startsWith('READY ') && ok({ child, url: line.slice(6) }));
    child.once('exit', (code) => fail(new Error(`the server exited with ${code}`)));
  });
}

/** Stops a child started by {@link startServerProcess} with SIGTERM and waits for it to exit. */
export async function stopServerProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { loadConfig } = await import('../src/config/index.js');
  const { createLogger } = await import('../src/logger.js');
  const { startServer } = await import('../src/server.js');
  const [configPath = '', secret = ''] = process.argv.slice(2);
  const config = loadConfig(JSON.parse(await readFile(configPath, 'utf8')) as unknown, {});
  const server = await startServer(config, { log: createLogger({ level: 'silent' }), webhookSecret: secret });
  process.stdout.write(`READY ${server.url}\n`);
  process.once('SIGTERM', () => void server.close({ graceMs: 0 }).then(() => process.exit(0)));
}
