import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ensureWebhookSecret, loadConfig } from './config/index.js';
import { isAppError } from './errors.js';
import { createLogger } from './logger.js';
import { startServer } from './server.js';

/**
 * Composition root: reads `config.ts` (path from `AUTOBUILDER_CONFIG`, default `./config.ts`;
 * absent means the embedded defaults), validates it, resolves the webhook secret and starts
 * the server. SIGINT/SIGTERM close it.
 */
async function main(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const file = resolve(env['AUTOBUILDER_CONFIG'] ?? 'config.ts');
  const input: unknown = existsSync(file) ? ((await import(pathToFileURL(file).href)) as { default?: unknown }).default : {};
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
  const stop = (signal: string) => {
    log.info({ signal }, 'shutting down');
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`autobuilder: ${isAppError(err) ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
