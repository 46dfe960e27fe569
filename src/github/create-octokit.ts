import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import { Octokit } from '@octokit/rest';
import Bottleneck from 'bottleneck';
import type { Logger } from '../logger.js';

const RetryingOctokit = Octokit.plugin(retry, throttling);

/**
 * How an Octokit authenticates: a token (sent as `Authorization: token …`), or an auth
 * strategy with its options (https://github.com/octokit/authentication-strategies.js), e.g.
 * @octokit/auth-app's `createAppAuth` for the App's JWT.
 */
export type OctokitCredentials = string | { authStrategy: (options: never) => unknown; auth: Record<string, unknown> };

/**
 * Creates the Octokit every GitHub call of the server goes through: @octokit/rest with the
 * retry plugin (one retry of a 5xx or network failure) and the throttling plugin (rate-limit
 * answers are waited out twice, then given up; writes go one at a time, at least
 * `writeIntervalMs` apart), following
 * https://docs.github.com/rest/using-the-rest-api/best-practices-for-using-the-rest-api.
 * `apiUrl` is GitHub's REST base URL (`https://api.github.com`, a GHES `/api/v3` URL, or a
 * test stand-in); `token` is a token or an auth strategy ({@link OctokitCredentials}); Octokit's own warnings and
 * errors go to `log`. `fetch` may be injected. Throws nothing; requests reject with
 * Octokit's `RequestError` (`status`, `message`).
 */
export function createOctokit(options: {
  apiUrl: string;
  token: OctokitCredentials;
  log: Logger;
  fetch?: typeof globalThis.fetch | undefined;
  writeIntervalMs?: number | undefined;
}): Octokit {
  const { log, token } = options;
  return new RetryingOctokit({
    ...(typeof token === 'string' ? { auth: token } : { authStrategy: token.authStrategy, auth: token.auth }),
    baseUrl: options.apiUrl.replace(/\/+$/, ''),
    userAgent: 'autobuilder',
    log: { debug: () => undefined, info: () => undefined, warn: (m: string) => log.warn(m), error: (m: string) => log.error(m) },
    retry: { retries: 1 },
    throttle: {
      write: new Bottleneck.Group({ maxConcurrent: 1, minTime: options.writeIntervalMs ?? 0 }),
      onRateLimit: (retryAfter: number, _options: unknown, _octokit: unknown, retryCount: number) => {
        log.warn({ retryAfter, retryCount }, 'GitHub rate limit reached');
        return retryCount < 2;
      },
      onSecondaryRateLimit: (retryAfter: number, _options: unknown, _octokit: unknown, retryCount: number) => {
        log.warn({ retryAfter, retryCount }, 'GitHub secondary rate limit reached');
        return retryCount < 2;
      },
    },
    ...(options.fetch === undefined ? {} : { request: { fetch: options.fetch } }),
  });
}
