import type { Config } from '../config/schema.js';
import type { Logger } from '../logger.js';
import { createGitHubAppAuth } from './github-app-auth.js';
import { createTokenAuth, type GitHubAuth } from './github-auth.js';

/**
 * The server's one {@link GitHubAuth}, from `config.github`: App mode when `github.app` is set
 * (a `github.token` beside it is not used, said once in the log), token mode when
 * `github.token` is, else mode `none`. `fetch` is handed to Octokit (metrics, tests).
 */
export function createGitHubAuth(config: Readonly<Pick<Config, 'github'>>, options: { log: Logger; fetch?: typeof globalThis.fetch | undefined }): GitHubAuth {
  const { github } = config;
  const log = options.log.child({ component: 'github-auth' });
  const common = { apiUrl: github.apiUrl, log, fetch: options.fetch, writeIntervalMs: github.writeIntervalMs };
  if (github.app === undefined) return createTokenAuth({ ...common, token: github.token });
  if (github.token !== undefined) log.warn('github.app and github.token are both set: GitHub App mode is used, the token is not');
  log.info({ appId: github.app.appId }, 'GitHub App mode: installation tokens per repository');
  return createGitHubAppAuth({ ...common, app: github.app });
}
