/**
 * A server in a process of its own, for the benchmarks whose load must not share the
 * server's event loop (load) or that kill it (chaos). Run as a script it starts autobuilder
 * with the JSON config in argv[2] and the webhook secret in argv[3], then prints
 * `READY <url>`; SIGTERM closes it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** Starts this file as a child process; resolves with the child and its URL once it listens. */
export function startServerProcess(configPath: string, secret: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [...(process.env['AUTOBUILDER_PROFILE'] ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof2'] : []), '--import', 'tsx', fileURLToPath(import.meta.url), configPath, secret], {
    cwd: resolve(import.meta.dirname, '..'),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
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
