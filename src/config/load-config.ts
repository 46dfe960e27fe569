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
 * Validates server settings and returns them frozen, with defaults filled in.
 * Secrets may come from the environment: `GITHUB_WEBHOOK_SECRET`, `GITHUB_TOKEN`,
 * `AUTOBUILDER_API_TOKEN` and `AUTOBUILDER_REDIS_URL` (`dispatch.redis.url`) override the file's values.
 *
 * @param input - what `config.ts` exported (anything; it is validated), or `{}` for the defaults
 * @param env - the environment to read secrets from (tests pass their own)
 * @throws AppError `CONFIG_INVALID` listing every problem at once, one `path: message` a line
 */
export function loadConfig(input: unknown, env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const result = configSchema.safeParse(withRedisUrl(input ?? {}, env['AUTOBUILDER_REDIS_URL']));
  if (!result.success) {
    const lines = result.error.issues.map((issue) => `  ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    throw new AppError('CONFIG_INVALID', `invalid configuration (${lines.length} problem(s)):\n${lines.join('\n')}`, {
      status: 500,
    });
  }
  const config = result.data;
  const secret = env['GITHUB_WEBHOOK_SECRET'];
  if (secret !== undefined && secret !== '') config.github.webhookSecret = secret;
  const token = env['GITHUB_TOKEN'];
  if (token !== undefined && token !== '') config.github.token = token;
  const apiToken = env['AUTOBUILDER_API_TOKEN'];
  if (apiToken !== undefined && apiToken !== '') config.api.token = apiToken;
  return deepFreeze(config);
}
