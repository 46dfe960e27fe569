import type { Octokit } from '@octokit/rest';
import type { Logger } from '../logger.js';
import { createOctokit } from './create-octokit.js';

/**
 * How the server authenticates to GitHub: `token` (a personal access token or fine-grained
 * token, `github.token`), `app` (a GitHub App: a JWT for the App, an installation access
 * token per repository; see https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app)
 * or `none` (nothing is sent to GitHub).
 */
export type GitHubAuthMode = 'token' | 'app' | 'none';

/**
 * The one place every GitHub call and every authenticated git fetch gets its credentials.
 *
 * Contract: `octokitFor` and `gitTokenFor` are per repository (`owner/name`) because an App's
 * installation token is; in token mode every repository gets the same client and token. They
 * never return a token that has expired: an installation token is refreshed shortly before its
 * `expires_at`. A repository the App is not installed on, or a key GitHub refuses, rejects with
 * a {@link GitHubAuthError} whose message is safe to log and to show (it never holds a secret).
 * Nothing here throws synchronously.
 */
export interface GitHubAuth {
  readonly mode: GitHubAuthMode;
  /**
   * The client for calls about `repository` (`owner/name`), from {@link createOctokit} (retry,
   * throttling). Rejects with `GITHUB_AUTH_NONE` in mode `none`, else as the interface says.
   */
  octokitFor(repository: string): Promise<Octokit>;
  /**
   * The token git sends (as `x-access-token`) to fetch `repository` over HTTPS from the GitHub
   * host, or undefined in mode `none`. Rejects as the interface says.
   */
  gitTokenFor(repository: string, options?: GitTokenOptions): Promise<string | undefined>;
  /**
   * How each of `repositories` (`owner/name`) is reached: in App mode its installation id or
   * why there is none (discovered as {@link octokitFor} would, from the same cache); in token
   * mode and mode `none` no GitHub call is made. Never rejects; never holds a secret.
   */
  status(repositories: readonly string[]): Promise<GitHubAuthStatus>;
  /**
   * Drops what is cached about an installation (`installationId`: its token and every
   * repository found in it) and about `repositories`, so that the next call discovers them
   * again: for `installation` and `installation_repositories` webhooks. No-op outside App mode.
   */
  forget(change: { installationId?: number | null | undefined; repositories?: readonly string[] | undefined }): void;
  /** Stops timers; later calls may still work but nothing is refreshed in the background. */
  close(): void;
}

/** Options of {@link GitHubAuth.gitTokenFor}. */
export interface GitTokenOptions {
  /**
   * ms the token must stay valid at least (default: the auth's own refresh margin); a token
   * handed to a remote worker may wait in its queue before git uses it
   */
  validForMs?: number | undefined;
}

/** What `GET /api/github` shows: the mode, the App id, and per repository its installation or the error. */
export interface GitHubAuthStatus {
  mode: GitHubAuthMode;
  /** the App's id in App mode, else null */
  appId: number | null;
  repositories: RepositoryAuthStatus[];
}

/** How one repository is reached; in token mode and mode `none` both fields are null. */
export interface RepositoryAuthStatus {
  repository: string;
  /** the App installation the repository is in (App mode, installed) */
  installationId: number | null;
  /** why the repository cannot be reached (App mode); the message is safe to show */
  error: { code: GitHubAuthErrorCode; message: string } | null;
}

/** Codes of {@link GitHubAuthError}. */
export type GitHubAuthErrorCode =
  'GITHUB_AUTH_NONE' | 'GITHUB_APP_NOT_INSTALLED' | 'GITHUB_APP_KEY_INVALID' | 'GITHUB_APP_KEY_REFUSED' | 'GITHUB_APP_UNREACHABLE';

/** Why credentials for a repository could not be had; `message` is safe to log and show. */
export class GitHubAuthError extends Error {
  readonly code: GitHubAuthErrorCode;
  constructor(code: GitHubAuthErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = 'GitHubAuthError';
    this.code = code;
  }
}

/**
 * Token mode (`token` set) or mode `none` (`token` undefined): one Octokit for every repository,
 * made on first use. `apiUrl`, `fetch` and `writeIntervalMs` go to {@link createOctokit}.
 */
export function createTokenAuth(options: {
  apiUrl: string;
  token: string | undefined;
  log: Logger;
  fetch?: typeof globalThis.fetch | undefined;
  writeIntervalMs?: number | undefined;
}): GitHubAuth {
  const { token } = options;
  let octokit: Octokit | null = null;
  return {
    mode: token === undefined ? 'none' : 'token',
    octokitFor() {
      if (token === undefined)
        return Promise.reject(new GitHubAuthError('GITHUB_AUTH_NONE', 'no GitHub credentials are configured (github.token or github.app)'));
      octokit ??= createOctokit({ apiUrl: options.apiUrl, token, log: options.log, fetch: options.fetch, writeIntervalMs: options.writeIntervalMs });
      return Promise.resolve(octokit);
    },
    gitTokenFor() {
      return Promise.resolve(token);
    },
    status(repositories) {
      return Promise.resolve({
        mode: token === undefined ? 'none' : 'token',
        appId: null,
        repositories: repositories.map((repository) => ({ repository, installationId: null, error: null })),
      });
    },
    forget() {},
    close() {},
  };
}
