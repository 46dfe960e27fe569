import { createHmac, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { readConfigFile } from '../config/read-config-file.js';
import { toMessage } from '../errors.js';
import { createCliOutput, globalOptionsOf, resolveConnection } from './cli-context.js';
import { CliError, EXIT } from './exit-codes.js';
import { PING_EXAMPLE } from './ping-example.js';

/** A webhook secret and where it was found (never the secret itself in output). */
export interface FoundSecret {
  secret: string;
  /** `--secret`, `AUTOBUILDER_WEBHOOK_SECRET`, `GITHUB_WEBHOOK_SECRET`, `<config file>` or `<dataDir>/webhook-secret` */
  source: string;
}

/**
 * The webhook secret to sign with, from the first of: `flag` (`--secret`), env
 * `AUTOBUILDER_WEBHOOK_SECRET`, and then as the server finds its own: env
 * `GITHUB_WEBHOOK_SECRET`, `github.webhookSecret` of the server's config file (`configFile`,
 * else `AUTOBUILDER_CONFIG` or `./config.ts`), the secret the server generated in
 * `<dataDir>/webhook-secret`. Nothing is created.
 * @throws CliError (exit 2) when none is found or the server's config file cannot be read
 */
export async function findWebhookSecret(
  options: { flag?: string | undefined; configFile?: string | undefined; env?: NodeJS.ProcessEnv } = {},
): Promise<FoundSecret> {
  const env = options.env ?? process.env;
  if (options.flag !== undefined && options.flag !== '') return { secret: options.flag, source: '--secret' };
  const own = env['AUTOBUILDER_WEBHOOK_SECRET'];
  if (own !== undefined && own !== '') return { secret: own, source: 'AUTOBUILDER_WEBHOOK_SECRET' };
  const fromEnv = env['GITHUB_WEBHOOK_SECRET'];
  if (fromEnv !== undefined && fromEnv !== '') return { secret: fromEnv, source: 'GITHUB_WEBHOOK_SECRET' };
  let config;
  try {
    config = await readConfigFile({ file: options.configFile, env });
  } catch (err) {
    throw new CliError(EXIT.usage, `no webhook secret given (--secret, AUTOBUILDER_WEBHOOK_SECRET) and the server's config cannot be read: ${toMessage(err)}`, {
      cause: err,
    });
  }
  const configured = config.config.github.webhookSecret;
  if (configured !== undefined) return { secret: configured, source: config.file ?? 'config' };
  // the server's own fallback (src/config/webhook-secret.ts): the secret it generated at its first start
  const file = join(resolve(config.config.dataDir), 'webhook-secret');
  const generated = await readFile(file, 'utf8').then(
    (text) => text.trim(),
    () => '',
  );
  if (generated !== '') return { secret: generated, source: file };
  throw new CliError(
    EXIT.usage,
    `no webhook secret: give --secret or AUTOBUILDER_WEBHOOK_SECRET, set GITHUB_WEBHOOK_SECRET or github.webhookSecret as the server has it, or run this where the server's data directory is (${file} does not exist yet)`,
  );
}

/** What `webhook test` sent and what the server answered. */
export interface WebhookTestResult {
  /** where the ping went: `<server URL>/hooks/github` */
  url: string;
  /** where the secret came from (see {@link FoundSecret}) */
  secretSource: string;
  deliveryId: string;
  /** the HTTP status; 0 when the server could not be reached */
  status: number;
  /** the answer's JSON, or its text when it is not JSON; null when there was none */
  body: unknown;
  /** true for a 2xx: the server verified the signature and took the ping */
  ok: boolean;
  /** what the answer means for the set-up, and what to do */
  meaning: string;
}

/** The `code` of an autobuilder error answer `{ error: { code } }`, or null. */
function errorCodeOf(body: unknown): string | null {
  if (typeof body !== 'object' || body === null) return null;
  const error = (body as Record<string, unknown>)['error'];
  if (typeof error !== 'object' || error === null) return null;
  const code = (error as Record<string, unknown>)['code'];
  return typeof code === 'string' ? code : null;
}

/** What an answer to a signed ping means (GitHub's deliveries get the same answer). */
export function toMeaning(status: number, body: unknown, secretSource: string): string {
  const code = errorCodeOf(body);
  if (status >= 200 && status < 300) return 'the server verified the signature and took the ping: this URL and secret work for GitHub deliveries';
  if (status === 401)
    return `the secrets differ: the server refused the signature (${code ?? 'unauthorized'}); set the server's webhook secret (GITHUB_WEBHOOK_SECRET, github.webhookSecret or its data directory's webhook-secret) and the one used here (from ${secretSource}) and GitHub's to the same value`;
  if (code === 'HOST_NOT_ALLOWED') return 'the server refused the Host header of this URL: set publicUrl to it or add its host to listen.allowedHosts';
  if (status === 404) return 'nothing answers POST /hooks/github at this URL: is it the autobuilder server (and the path a proxy forwards)?';
  if (status === 503) return 'the server is starting or stopping: try again in a moment';
  if (status === 413) return 'the server (or a proxy in front of it) refused the body as too large';
  return `unexpected answer ${status}${code === null ? '' : ` ${code}`}: see the server's log for this delivery`;
}

/**
 * Signs GitHub's example `ping` with `secret` (HMAC-SHA256 of the raw body in
 * `X-Hub-Signature-256`, https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries)
 * and POSTs it to `<serverUrl>/hooks/github` as GitHub does (`X-GitHub-Event: ping`, a fresh
 * `X-GitHub-Delivery` UUID), then says what the answer means. Never throws for an answer or
 * an unreachable server: that is a result with `ok: false`.
 */
export async function sendTestPing(options: { serverUrl: string; secret: FoundSecret; timeoutMs?: number; fetch?: typeof fetch }): Promise<WebhookTestResult> {
  const url = `${options.serverUrl}/hooks/github`;
  const body = JSON.stringify(PING_EXAMPLE);
  const deliveryId = randomUUID();
  const signature = `sha256=${createHmac('sha256', options.secret.secret).update(body).digest('hex')}`;
  const fetchFn = options.fetch ?? fetch;
  const base = { url, secretSource: options.secret.source, deliveryId };
  let response: Response;
  try {
    response = await fetchFn(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'GitHub-Hookshot/autobuilder-webhook-test',
        'x-github-event': 'ping',
        'x-github-delivery': deliveryId,
        'x-github-hook-id': String(PING_EXAMPLE['hook_id']),
        'x-hub-signature-256': signature,
      },
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    });
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : toMessage(err);
    return { ...base, status: 0, body: null, ok: false, meaning: `the server could not be reached: ${cause}` };
  }
  const text = await response.text().catch(() => '');
  let parsed: unknown = text === '' ? null : text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON (a proxy's page): shown as text
  }
  const ok = response.status >= 200 && response.status < 300;
  return { ...base, status: response.status, body: parsed, ok, meaning: toMeaning(response.status, parsed, options.secret.source) };
}

/**
 * Adds `webhook test` (see README, Command line): a signed `ping` to the server's webhook
 * receiver, as a check of the URL and secret GitHub is given. Exit 0 on a 2xx, 3 otherwise.
 */
export function registerWebhookCommands(program: Command, env: NodeJS.ProcessEnv = process.env): void {
  const webhook = program.command('webhook').description("check the server's webhook receiver");
  webhook
    .command('test')
    .description(
      "sign GitHub's example ping with the webhook secret and send it to <url>/hooks/github (the server URL: --url, AUTOBUILDER_URL, the CLI config file); says what the server answered and what it means; exit 0 on 2xx, 3 otherwise",
    )
    .option(
      '--secret <secret>',
      "the webhook secret (else AUTOBUILDER_WEBHOOK_SECRET, GITHUB_WEBHOOK_SECRET, github.webhookSecret of the server's config, or its data directory's webhook-secret; prefer env: a flag shows in ps)",
    )
    .option('--config <file>', "the server's config module, to find its secret (default: AUTOBUILDER_CONFIG or ./config.ts)")
    .option('--timeout <seconds>', 'seconds to wait for the answer', '10')
    .action(async (options: { secret?: string; config?: string; timeout: string }, command: Command) => {
      const global = globalOptionsOf(command);
      const out = createCliOutput({ json: global.json === true, env });
      const timeout = Number(options.timeout);
      if (!Number.isFinite(timeout) || timeout <= 0) throw new CliError(EXIT.usage, `--timeout must be a positive number of seconds, not ${options.timeout}`);
      const connection = resolveConnection(global, env);
      const secret = await findWebhookSecret({ flag: options.secret, configFile: options.config, env });
      const result = await sendTestPing({ serverUrl: connection.url, secret, timeoutMs: timeout * 1000 });
      out.result(result, () => {
        const { style } = out;
        // a text answer is shown without its control characters (a terminal would act on them)
        // oxlint-disable-next-line no-control-regex -- control characters are what is removed
        const shown = typeof result.body === 'string' ? result.body.slice(0, 500).replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ') : JSON.stringify(result.body);
        const answer = result.status === 0 ? 'no answer' : `${result.status} ${shown}`;
        return [
          `ping ${result.deliveryId} to ${result.url} (secret from ${result.secretSource})`,
          `answer: ${answer}`,
          result.ok ? style.green(result.meaning) : style.red(result.meaning),
        ].join('\n');
      });
      if (!result.ok) process.exitCode = EXIT.server;
    });
}
