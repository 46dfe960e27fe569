import { AppError } from '../errors.js';
import { configSchema, type Config } from './schema.js';

/** Deep-freezes a plain data tree and returns it typed as read-only. */
function deepFreeze<T>(value: T): Readonly<T> {
  if (value !== null && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

/** `input` with `dispatch.redis.url` set to `url` when given (before validation: bullmq mode needs it). */
function withRedisUrl(input: unknown, url: string | undefined): unknown {
  if (url === undefined || url === '' || typeof input !== 'object' || input === null) return input;
  const record = input as Record<string, unknown>;
  const dispatch = typeof record['dispatch'] === 'object' && record['dispatch'] !== null ? (record['dispatch'] as Record<string, unknown>) : {};
  const redis = typeof dispatch['redis'] === 'object' && dispatch['redis'] !== null ? (dispatch['redis'] as Record<string, unknown>) : {};
  return { ...record, dispatch: { ...dispatch, redis: { ...redis, url } } };
}

/**
 * `input` with `github.app.appId` and `github.app.privateKey` from `GITHUB_APP_ID` and
 * `GITHUB_APP_PRIVATE_KEY` when set (before validation: the App block needs both). A key
 * written on one line with `\n` escapes, as env files hold it, gets its line breaks back; a
 * key from the environment replaces the file's `privateKeyPath`.
 */
function withGitHubAppEnv(input: unknown, env: NodeJS.ProcessEnv): unknown {
  const appId = env['GITHUB_APP_ID'];
  const privateKey = env['GITHUB_APP_PRIVATE_KEY'];
  const hasId = appId !== undefined && appId !== '';
  const hasKey = privateKey !== undefined && privateKey !== '';
  if ((!hasId && !hasKey) || typeof input !== 'object' || input === null) return input;
  const record = input as Record<string, unknown>;
  const github = typeof record['github'] === 'object' && record['github'] !== null ? (record['github'] as Record<string, unknown>) : {};
  const app = typeof github['app'] === 'object' && github['app'] !== null ? { ...(github['app'] as Record<string, unknown>) } : {};
  // a number, as the schema wants; anything else is left for the schema to refuse
  if (hasId) app['appId'] = /^\d{1,15}$/.test(appId.trim()) ? Number(appId.trim()) : appId;
  if (hasKey) {
    app['privateKey'] = privateKey.replace(/\\n/g, '\n');
    delete app['privateKeyPath'];
  }
  return { ...record, github: { ...github, app } };
}

/**
 * Validates server settings and returns them frozen, with defaults filled in.
 * Secrets may come from the environment: `GITHUB_WEBHOOK_SECRET`, `GITHUB_TOKEN`,
 * `AUTOBUILDER_API_TOKEN`, `AUTOBUILDER_REDIS_URL` (`dispatch.redis.url`), `GITHUB_APP_ID` and
 * `GITHUB_APP_PRIVATE_KEY` (`github.app`) override the file's values. In GitHub App mode the
 * App's `github.app.webhookSecret`, when set, becomes `github.webhookSecret` (the one secret
 * deliveries are verified with); `GITHUB_WEBHOOK_SECRET` still overrides it.
 *
 * @param input - what `config.ts` exported (anything; it is validated), or `{}` for the defaults
 * @param env - the environment to read secrets from (tests pass their own)
 * @throws AppError `CONFIG_INVALID` listing every problem at once, one `path: message` a line
 */
export function loadConfig(input: unknown, env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const result = configSchema.safeParse(withGitHubAppEnv(withRedisUrl(input ?? {}, env['AUTOBUILDER_REDIS_URL']), env));
  if (!result.success) {
    const lines = result.error.issues.map((issue) => `  ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    throw new AppError('CONFIG_INVALID', `invalid configuration (${lines.length} problem(s)):\n${lines.join('\n')}`, {
      status: 500,
    });
  }
  const config = result.data;
  if (config.github.app?.webhookSecret !== undefined) config.github.webhookSecret = config.github.app.webhookSecret;
  const secret = env['GITHUB_WEBHOOK_SECRET'];
  if (secret !== undefined && secret !== '') config.github.webhookSecret = secret;
  const token = env['GITHUB_TOKEN'];
  if (token !== undefined && token !== '') config.github.token = token;
  const apiToken = env['AUTOBUILDER_API_TOKEN'];
  if (apiToken !== undefined && apiToken !== '') config.api.token = apiToken;
  return deepFreeze(config);
}
