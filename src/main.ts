import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { pathToFileURL } from 'node:url';
import { ensureWebhookSecret, loadConfig } from './config/index.js';
import { AppError, isAppError, toMessage } from './errors.js';
import { createLogger } from './logger.js';
import { startServer } from './server.js';

/**
 * Composition root: reads `config.ts` (path from `AUTOBUILDER_CONFIG`, default `./config.ts`;
 * absent means the embedded defaults), validates it, resolves the webhook secret and starts
 * the server. SIGINT/SIGTERM close it; a signal while it closes is logged and waits with it.
 */
async function main(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const file = resolve(env['AUTOBUILDER_CONFIG'] ?? 'config.ts');
  const input: unknown = existsSync(file) ? (await importConfigModule(file)).default : {};
  const config = loadConfig(input, env);
  const log = createLogger({ level: config.logLevel });
  log.info({ file: existsSync(file) ? file : null }, 'configuration loaded');
  const secret = await ensureWebhookSecret(config.github.webhookSecret, resolve(config.dataDir));
  if (secret.file !== null) {
    log.warn(
      { file: secret.file, generated: secret.generated },
      'no webhook secret configured: using the one in this file (set it as the webhook secret on GitHub)',
    );
  }
  const server = await startServer(config, { log, webhookSecret: secret.secret });
  let stopping = false;
  const stop = (signal: string) => {
    // a later signal must not end the process under running builds (the default action of a
    // signal without a listener): they get their final state and commit status first, within
    // builds.shutdownGraceSeconds and then by being cancelled
    if (stopping) {
      log.warn({ signal }, 'already stopping; builds get their final status first');
      return;
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err: err instanceof Error ? err.message : String(err) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/**
 * Imports the config module `file`. From source (tsx), or a `.js`/`.mjs` file: a plain
 * import. Compiled (`node dist/main.js`), Node 20 cannot import a TypeScript file itself:
 * a short-lived child process imports it through tsx and hands its default export over as
 * JSON (the config is plain data), so that tsx's loader thread (about 15 MiB) is not kept
 * for the life of the server. Throws AppError `CONFIG_INVALID` with the child's report when it fails.
 */
async function importConfigModule(file: string): Promise<{ default?: unknown }> {
  const url = pathToFileURL(file).href;
  if (import.meta.url.endsWith('.ts') || !/\.[mc]?ts$/.test(file)) return (await import(url)) as { default?: unknown };
  const script = `const m = await import(${JSON.stringify(url)}); process.stdout.write(JSON.stringify({ default: m.default }));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', import.meta.resolve('tsx'), '--input-type=module', '-e', script], {
    maxBuffer: 16 * 1024 ** 2,
  }).catch((err: unknown) => {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    // the child's own report of the problem (esbuild's "file:line:column: ERROR: …")
    const problem = (/^.*ERROR:.*$/m.exec(stderr) ?? /^\w*Error:.*$/m.exec(stderr))?.[0] ?? (stderr.trim() || toMessage(err));
    throw new AppError('CONFIG_INVALID', `${file} could not be read: ${problem}`, { cause: err });
  });
  return JSON.parse(stdout) as { default?: unknown };
}

main().catch((err: unknown) => {
  process.stderr.write(`autobuilder: ${isAppError(err) ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
