import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * Paths pino masks in every app log line: tokens, secrets and authorization headers must
 * never reach a log (see https://getpino.io/#/docs/redaction).
 */
export const REDACT_PATHS: readonly string[] = [
  'token',
  'secret',
  'webhookSecret',
  '*.token',
  '*.secret',
  '*.webhookSecret',
  'github.token',
  'github.webhookSecret',
  'privateKey',
  '*.privateKey',
  'app.privateKey',
  'github.app.privateKey',
  'github.app.webhookSecret',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers["x-hub-signature-256"]',
  'req.headers["x-hub-signature"]',
];

/**
 * Creates the one pino root logger of the process. Modules take children of it:
 * `child({ component })`, `child({ buildId, repo, sha })`, `child({ deliveryId })`.
 * `destination` defaults to stdout; tests pass a stream to read what was logged.
 */
export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const opts = { level: options.level ?? 'info', redact: { paths: [...REDACT_PATHS], censor: '[redacted]' } };
  return options.destination === undefined ? pino(opts) : pino(opts, options.destination as pino.DestinationStream);
}
