import { resolve } from 'node:path';
import { ensureWebhookSecret } from './config/index.js';
import { readConfigFile } from './config/read-config-file.js';
import { isAppError } from './errors.js';
import { createLogger } from './logger.js';
import { startServer } from './server.js';

/**
 * Composition root: reads `config.ts` (path from `AUTOBUILDER_CONFIG`, default `./config.ts`;
 * absent means the embedded defaults), validates it, resolves the webhook secret and starts
 * the server. SIGINT/SIGTERM close it; a signal while it closes is logged and waits with it.
 */
async function main(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const { config, file } = await readConfigFile({ env });
  const log = createLogger({ level: config.logLevel });
  log.info({ file }, 'configuration loaded');
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

main().catch((err: unknown) => {
  process.stderr.write(`autobuilder: ${isAppError(err) ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
