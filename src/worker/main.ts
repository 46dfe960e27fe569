import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isAppError, toMessage } from '../errors.js';
import { createLogger } from '../logger.js';
import { startWorker } from './start-worker.js';
import { loadWorkerConfig } from './worker-config.js';

/**
 * `autobuilder worker`: reads `worker.config.ts` (path from `AUTOBUILDER_WORKER_CONFIG`,
 * default `./worker.config.ts`), starts the worker, and drains on SIGTERM or SIGINT: running
 * builds finish and report, no more are taken. A second signal stops the running builds
 * (they report `cancelled`) and exits.
 */
export async function runWorkerCommand(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const file = resolve(env['AUTOBUILDER_WORKER_CONFIG'] ?? 'worker.config.ts');
  const input: unknown = existsSync(file) ? ((await import(pathToFileURL(file).href)) as { default?: unknown }).default : {};
  const config = loadWorkerConfig(input, env);
  const log = createLogger({ level: config.logLevel });
  log.info({ file: existsSync(file) ? file : null, id: config.id }, 'worker configuration loaded');
  const worker = await startWorker(config, { log });
  let draining = false;
  const stop = (signal: string) => {
    if (draining) {
      log.warn({ signal }, 'stopping now: running builds are cancelled');
      worker.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
      return;
    }
    draining = true;
    log.info({ signal }, 'draining: running builds finish, no more are taken');
    worker.drain().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err: toMessage(err) }, 'drain failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  runWorkerCommand().catch((err: unknown) => {
    process.stderr.write(`autobuilder worker: ${isAppError(err) ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
