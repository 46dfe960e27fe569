import { createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createAppAuth } from '@octokit/auth-app';
import type { Octokit } from '@octokit/rest';
import type { Config } from '../config/schema.js';
import { toMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { createOctokit } from './create-octokit.js';
import { GitHubAuthError, type GitHubAuth, type GitHubAuthErrorCode } from './github-auth.js';

/** The `github.app` settings: the App's id and its private key, as text or in a file. */
export type GitHubAppSettings = Pick<NonNullable<Config['github']['app']>, 'appId' | 'privateKey' | 'privateKeyPath'>;

/** The longest an installation token is replaced before its `expires_at`: 5 minutes. */
export const TOKEN_REFRESH_MARGIN_MS = 5 * 60_000;

/** How long a repository found not installed (or unreachable for a refused key) is believed before GitHub is asked again. */
export const DEFAULT_ERROR_TTL_MS = 60_000;

/** One installation access token (https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app). */
interface HeldToken {
  token: string;
  /** ms since the epoch, from GitHub's `expires_at` */
  expiresAt: number;
  /** ms since the epoch, when it was received */
  obtainedAt: number;
}

/**
 * When a token is replaced: {@link TOKEN_REFRESH_MARGIN_MS} before it expires, or a quarter of
 * its lifetime before when that is shorter (GitHub's tokens live an hour; a test's a few seconds).
 */
export function toRefreshAt(token: { expiresAt: number; obtainedAt: number }): number {
  return token.expiresAt - Math.min(TOKEN_REFRESH_MARGIN_MS, Math.max(0, token.expiresAt - token.obtainedAt) / 4);
}

/**
 * The App's private key as PEM text: `privateKey`, or the file `privateKeyPath`. It must be
 * an RSA private key node:crypto can read, as GitHub issues them (PKCS#1 `BEGIN RSA PRIVATE KEY`,
 * or PKCS#8): https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/managing-private-keys-for-github-apps.
 * @throws GitHubAuthError `GITHUB_APP_KEY_INVALID` (the message names the file, never the key)
 */
export async function readGitHubAppKey(app: Pick<GitHubAppSettings, 'privateKey' | 'privateKeyPath'>): Promise<string> {
  let text = app.privateKey;
  const where = app.privateKey === undefined ? `github.app.privateKeyPath (${app.privateKeyPath ?? ''})` : 'github.app.privateKey (or GITHUB_APP_PRIVATE_KEY)';
  if (text === undefined) {
    if (app.privateKeyPath === undefined) throw new GitHubAuthError('GITHUB_APP_KEY_INVALID', 'no GitHub App private key is configured');
    try {
      text = await readFile(app.privateKeyPath, 'utf8');
    } catch (err) {
      throw new GitHubAuthError('GITHUB_APP_KEY_INVALID', `the GitHub App private key in ${where} could not be read: ${toMessage(err)}`, { cause: err });
    }
  }
  let type: string | undefined;
  try {
    type = createPrivateKey(text).asymmetricKeyType;
  } catch (err) {
    // node:crypto's reasons name the decoder, never the key's bytes
    throw new GitHubAuthError('GITHUB_APP_KEY_INVALID', `the GitHub App private key in ${where} is not a PEM private key: ${toMessage(err)}`, { cause: err });
  }
  if (type !== 'rsa')
    throw new GitHubAuthError('GITHUB_APP_KEY_INVALID', `the GitHub App private key in ${where} is a ${type ?? 'unknown'} key; GitHub Apps sign with RSA`);
  return text;
}

/**
 * What a build log masks of the App's private key: the whole PEM and each base64 line of it
 * (a log is masked line by line, so a key printed whole is masked one line at a time).
 */
export function toKeyMaskValues(pem: string): string[] {
  const lines = pem
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length >= 16 && !line.startsWith('-----'));
  return [pem.trim(), ...lines];
}

/** The hook of an Octokit auth strategy, typed as @octokit/auth-app declares it. */
type AuthHook = ReturnType<typeof createAppAuth>['hook'];

const statusOf = (err: unknown): number | null =>
  typeof err === 'object' && err !== null && 'status' in err && typeof err.status === 'number' ? err.status : null;

/** What was found about one repository: its installation, or why there is none, and when. */
type Discovery = { installationId: number; error: null; at: number } | { installationId: null; error: GitHubAuthError; at: number };

/**
 * GitHub App mode (https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/about-authentication-with-a-github-app):
 * the App authenticates with a JWT signed by its private key (made by @octokit/auth-app, which
 * also waits out a clock skew GitHub reports), finds the installation of each repository with
 * `GET /repos/{owner}/{repo}/installation` and calls GitHub about it with that installation's
 * access token (`POST /app/installations/{id}/access_tokens`).
 *
 * Caching: an installation found is kept until {@link GitHubAuth.forget} drops it (an
 * installation webhook) or GitHub answers 404 for its token; a repository that is not
 * installed (or any refusal but an unreachable GitHub) is believed for `errorTtlMs`. Each
 * installation's token is kept until {@link toRefreshAt}, then replaced at the next call:
 * auth-app's own token cache keeps every token 59 minutes whatever its `expires_at`, so it is
 * bypassed (`refresh: true`) and this one, which reads `expires_at`, is used. A request that
 * GitHub answers 401 with a token held a while, or due for refresh, gets one more try with a
 * new token (a token revoked early, or one that expired on the way); with a token just made,
 * one more try after a second (GitHub's replication delay). Discoveries and token requests
 * for the same repository or installation are shared.
 *
 * Errors are {@link GitHubAuthError}s: `GITHUB_APP_KEY_INVALID` (the key cannot be read),
 * `GITHUB_APP_KEY_REFUSED` (GitHub answers 401 to the JWT: wrong key or App id),
 * `GITHUB_APP_NOT_INSTALLED` (404 or 403 for the repository or installation),
 * `GITHUB_APP_UNREACHABLE` (anything else). Each is logged at the first call that meets it
 * for a repository, not again until the answer changes.
 */
export function createGitHubAppAuth(options: {
  apiUrl: string;
  app: GitHubAppSettings;
  log: Logger;
  fetch?: typeof globalThis.fetch | undefined;
  writeIntervalMs?: number | undefined;
  /** ms since the epoch (tests) */
  now?: () => number;
  errorTtlMs?: number;
}): GitHubAuth {
  const { log } = options;
  const appId = options.app.appId;
  const now = options.now ?? Date.now;
  const errorTtlMs = options.errorTtlMs ?? DEFAULT_ERROR_TTL_MS;
  const clientOptions = { apiUrl: options.apiUrl, log, fetch: options.fetch, writeIntervalMs: options.writeIntervalMs };

  /** the App's own client (JWT); made once the key is read, made again after a failed read */
  let appClient: Promise<Octokit> | null = null;
  const app = (): Promise<Octokit> => {
    if (appClient === null) {
      const made = readGitHubAppKey(options.app).then((privateKey) =>
        createOctokit({ ...clientOptions, token: { authStrategy: createAppAuth, auth: { appId, privateKey } } }),
      );
      appClient = made;
      made.catch(() => {
        if (appClient === made) appClient = null;
      });
    }
    return appClient;
  };

  const toAuthError = (err: unknown, what: { repository?: string; installationId?: number }): GitHubAuthError => {
    if (err instanceof GitHubAuthError) return err;
    const status = statusOf(err);
    const answer = `GitHub answered ${status ?? 'nothing'}: ${toMessage(err)}`;
    const subject = what.repository === undefined ? `installation ${what.installationId ?? '?'}` : what.repository;
    let code: GitHubAuthErrorCode;
    let message: string;
    if (status === 401) {
      code = 'GITHUB_APP_KEY_REFUSED';
      message = `GitHub refused the App's JWT for ${subject} (${answer}); check that github.app.appId (${appId}) is the App's id and the private key one of its keys`;
    } else if (status === 404 || status === 403) {
      code = 'GITHUB_APP_NOT_INSTALLED';
      message =
        what.repository === undefined
          ? `installation ${what.installationId ?? '?'} of the GitHub App ${appId} is gone or suspended (${answer})`
          : `the GitHub App ${appId} is not installed on ${what.repository} (${answer}); install it on the repository or its owner`;
    } else if (status === null && /^\[(universal-github-app-jwt|@octokit\/auth-app)\]/.test(toMessage(err))) {
      code = 'GITHUB_APP_KEY_INVALID';
      message = `the GitHub App's JWT could not be made: ${toMessage(err)}`;
    } else {
      code = 'GITHUB_APP_UNREACHABLE';
      message = `GitHub could not be asked about ${subject} (${answer})`;
    }
    return new GitHubAuthError(code, message, { cause: err });
  };

  // ---- installation tokens
  const tokens = new Map<number, HeldToken>();
  const tokenRequests = new Map<number, Promise<HeldToken>>();

  async function requestToken(installationId: number): Promise<HeldToken> {
    let result: unknown;
    try {
      result = await (await app()).auth({ type: 'installation', installationId, refresh: true });
    } catch (err) {
      const error = toAuthError(err, { installationId });
      if (error.code === 'GITHUB_APP_NOT_INSTALLED') forget({ installationId });
      throw error;
    }
    const { token, expiresAt } = (typeof result === 'object' && result !== null ? result : {}) as { token?: unknown; expiresAt?: unknown };
    const expires = typeof expiresAt === 'string' ? Date.parse(expiresAt) : NaN;
    if (typeof token !== 'string' || token === '' || Number.isNaN(expires)) {
      throw new GitHubAuthError('GITHUB_APP_UNREACHABLE', `GitHub's answer for an access token of installation ${installationId} has no token or expires_at`);
    }
    const held = { token, expiresAt: expires, obtainedAt: now() };
    tokens.set(installationId, held);
    log.debug({ installationId, expiresAt }, 'installation token issued');
    return held;
  }

  /** A token of `installationId` valid at least `validForMs` more (and not due for refresh). */
  async function tokenFor(installationId: number, validForMs = 0): Promise<HeldToken> {
    const held = tokens.get(installationId);
    if (held !== undefined && now() < toRefreshAt(held) && now() + validForMs < held.expiresAt) return held;
    let pending = tokenRequests.get(installationId);
    if (pending === undefined) {
      pending = requestToken(installationId).finally(() => tokenRequests.delete(installationId));
      tokenRequests.set(installationId, pending);
    }
    return pending;
  }

  /** The auth strategy of one installation's client: its current token on every request. */
  const installationStrategy = ({ installationId }: { installationId: number }) => {
    const auth = async () => ({ type: 'token', tokenType: 'installation', token: (await tokenFor(installationId)).token });
    const hook: AuthHook = async (request, route, parameters) => {
      const send = (token: string) => {
        const authorization = `token ${token}`;
        return typeof route === 'string'
          ? request(route, { ...parameters, headers: { ...parameters?.headers, authorization } })
          : request({ ...route, ...parameters, headers: { ...route.headers, ...parameters?.headers, authorization } });
      };
      const held = await tokenFor(installationId);
      try {
        return await send(held.token);
      } catch (err) {
        if (statusOf(err) !== 401) throw err;
        if (now() - held.obtainedAt < 5000 && now() < toRefreshAt(held)) {
          // a new token may not have reached every GitHub server yet (as @octokit/auth-app waits too)
          await new Promise((resolve) => setTimeout(resolve, 1000));
          return send(held.token);
        }
        if (tokens.get(installationId) === held) tokens.delete(installationId);
        return send((await tokenFor(installationId)).token);
      }
    };
    return Object.assign(auth, { hook });
  };

  const clients = new Map<number, Octokit>();
  const clientOf = (installationId: number): Octokit => {
    let client = clients.get(installationId);
    if (client === undefined) {
      client = createOctokit({ ...clientOptions, token: { authStrategy: installationStrategy, auth: { installationId } } });
      clients.set(installationId, client);
    }
    return client;
  };

  // ---- installations per repository
  const discoveries = new Map<string, Discovery>();
  const discovering = new Map<string, Promise<Discovery>>();
  /** the last outcome logged per repository: `installed:<id>` or the error code */
  const logged = new Map<string, string>();

  async function discover(repository: string): Promise<Discovery> {
    const [owner = '', repo = ''] = repository.split('/');
    let found: Discovery;
    try {
      const { data } = await (await app()).rest.apps.getRepoInstallation({ owner, repo });
      found = { installationId: data.id, error: null, at: now() };
    } catch (err) {
      found = { installationId: null, error: toAuthError(err, { repository }), at: now() };
    }
    const key = repository.toLowerCase();
    const outcome = found.error === null ? `installed:${found.installationId}` : found.error.code;
    if (logged.get(key) !== outcome) {
      logged.set(key, outcome);
      if (found.error === null) log.info({ repository, installationId: found.installationId }, 'GitHub App installation found');
      else log.error({ repository, code: found.error.code, err: found.error.message }, 'GitHub App cannot reach the repository');
    }
    // an unreachable GitHub is asked again at the next call; a refusal stands a while
    if (found.error === null || found.error.code !== 'GITHUB_APP_UNREACHABLE') discoveries.set(key, found);
    return found;
  }

  async function installationOf(repository: string): Promise<number> {
    const key = repository.toLowerCase();
    let found = discoveries.get(key);
    if (found === undefined || (found.error !== null && now() - found.at >= errorTtlMs)) {
      let pending = discovering.get(key);
      if (pending === undefined) {
        pending = discover(repository).finally(() => discovering.delete(key));
        discovering.set(key, pending);
      }
      found = await pending;
    }
    if (found.error !== null) throw found.error;
    return found.installationId;
  }

  function forget(change: { installationId?: number | null | undefined; repositories?: readonly string[] | undefined }): void {
    for (const repository of change.repositories ?? []) discoveries.delete(repository.toLowerCase());
    const id = change.installationId;
    if (id === undefined || id === null) return;
    tokens.delete(id);
    clients.delete(id);
    for (const [key, found] of discoveries) if (found.installationId === id) discoveries.delete(key);
  }

  return {
    mode: 'app',
    async octokitFor(repository) {
      return clientOf(await installationOf(repository));
    },
    async gitTokenFor(repository, tokenOptions) {
      return (await tokenFor(await installationOf(repository), tokenOptions?.validForMs)).token;
    },
    async status(repositories) {
      return {
        mode: 'app',
        appId,
        repositories: await Promise.all(
          repositories.map(async (repository) => {
            try {
              return { repository, installationId: await installationOf(repository), error: null };
            } catch (err) {
              const error = toAuthError(err, { repository });
              return { repository, installationId: null, error: { code: error.code, message: error.message } };
            }
          }),
        ),
      };
    },
    forget,
    close() {
      tokens.clear();
      clients.clear();
    },
  };
}
