import type { Build, BuildState } from '../builds/build.js';
import { toMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { createSqliteStatusOutbox, type NewOutboxEntry, type OutboxEntry, type StatusOutbox } from '../store/sqlite-status-outbox.js';
import { createOutboxSender } from './outbox-sender.js';
import { createTokenAuth, GitHubAuthError, type GitHubAuth } from './github-auth.js';

/** GitHub's commit status states (https://docs.github.com/rest/commits/statuses). */
export type CommitStatusState = 'pending' | 'success' | 'failure' | 'error';

/** GitHub caps a commit status description at 140 characters. */
export const MAX_DESCRIPTION = 140;

/** Maps a build state onto the commit status state GitHub shows for it. */
export function toCommitStatusState(state: BuildState): CommitStatusState {
  switch (state) {
    case 'queued':
    case 'running':
      return 'pending';
    case 'success':
      return 'success';
    case 'failure':
      return 'failure';
    case 'error':
    case 'cancelled':
      return 'error';
    default: {
      const unreachable: never = state;
      return unreachable;
    }
  }
}

/** Shortens `text` to GitHub's description limit, marking the cut with an ellipsis. */
export function toDescription(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length <= MAX_DESCRIPTION ? flat : `${flat.slice(0, MAX_DESCRIPTION - 1)}…`;
}

/** Posts commit statuses for builds. Failures are logged, never thrown: they must not block a build. */
export interface CommitStatusPublisher {
  /**
   * Queues the status of `build` as it is now on its commit in the durable outbox and starts
   * posting; resolves once it is queued and on disk, not posted (a GitHub outage never holds a build up).
   */
  publish(build: Build): Promise<void>;
  /**
   * Queues a commit status that belongs to no build (e.g. `autobuilder/config` on a config
   * repository commit), with the same outbox, retries and newest-per-context rule.
   * `buildId` only labels it in logs.
   */
  publishStatus(status: NewOutboxEntry): Promise<void>;
  /** Resolves when every status that is due has been tried (tests, shutdown). */
  flush(): Promise<void>;
  /** Stops retrying and closes the outbox; what is queued is posted after the next start. */
  close(): void;
}

/** Delay before the next attempt after `attempts` failed ones, in ms: 1 s doubling up to 1 min. */
export function toRetryDelay(attempts: number): number {
  return Math.min(1000 * 2 ** attempts, 60_000);
}

/**
 * True for answers that will not change by trying again: a 4xx other than 408 and 429, and a
 * repository the GitHub App is not installed on (a refused or unreadable key may be fixed, and
 * its statuses are kept for then).
 */
function isPermanent(err: unknown): boolean {
  if (err instanceof GitHubAuthError) return err.code === 'GITHUB_APP_NOT_INSTALLED' || err.code === 'GITHUB_AUTH_NONE';
  const status = typeof err === 'object' && err !== null && 'status' in err ? Number((err as { status: unknown }).status) : NaN;
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

export { createOctokit, type OctokitCredentials } from './create-octokit.js';

/**
 * Creates the publisher: statuses go through the durable `outbox` (in memory when not
 * given) and are posted one at a time, oldest first, with @octokit/rest and the retry and
 * throttling plugins (https://docs.github.com/rest/using-the-rest-api/best-practices-for-using-the-rest-api).
 * A failed post is tried again with a growing delay (see {@link toRetryDelay}) until GitHub
 * accepts it, across restarts; a 4xx other than 408/429 is given up, logged. `apiUrl` is
 * GitHub's REST base URL (`https://api.github.com`, a GHES `/api/v3` URL, or a test
 * stand-in). Each status is posted with `auth.octokitFor(owner/repo)` (an App's installation
 * token, or the one token); without `auth`, a token auth is made of `token`, `apiUrl`, `fetch`
 * and `writeIntervalMs`. In mode `none` (no `token`, no `auth`) every post is skipped, said once
 * in the log. `fetch` may be injected. `writeIntervalMs` is the least time between two posts
 * (GitHub suggests 1000 for heavy traffic; rate-limit answers are honoured whatever it is).
 * The client is {@link createOctokit}'s.
 */
export function createCommitStatusPublisher(options: {
  apiUrl: string;
  token: string | undefined;
  /** the server's credentials; over `token` */
  auth?: GitHubAuth;
  publicUrl: string;
  log: Logger;
  fetch?: typeof globalThis.fetch;
  outbox?: StatusOutbox;
  writeIntervalMs?: number;
  now?: () => number;
}): CommitStatusPublisher {
  const { log, publicUrl } = options;
  const now = options.now ?? Date.now;
  const auth =
    options.auth ?? createTokenAuth({ apiUrl: options.apiUrl, token: options.token, log, fetch: options.fetch, writeIntervalMs: options.writeIntervalMs });
  if (auth.mode === 'none') {
    log.info('no GitHub credentials configured: commit statuses are skipped');
    return { publish: async () => undefined, publishStatus: async () => undefined, flush: async () => undefined, close: () => options.outbox?.close() };
  }
  const outbox = options.outbox ?? createSqliteStatusOutbox({ path: ':memory:' });

  let closed = false;
  /** read through a call: `close` may run while a pass awaits */
  const isClosed = () => closed;
  const sender = createOutboxSender({
    pass: async () => {
      for (const entry of outbox.due(now(), 100)) {
        if (isClosed()) return false;
        if (outbox.has(entry.id)) await post(entry);
      }
      return false;
    },
    nextDueAt: () => outbox.nextDueAt(),
    now,
    // the outbox itself failing (its database closed, full, locked): said, never an unhandled rejection
    onError: (err) => log.error({ err: toMessage(err) }, 'commit status outbox failed; statuses wait for the next one'),
  });

  async function post(entry: OutboxEntry): Promise<void> {
    const fields = { buildId: entry.buildId, state: entry.state, context: entry.context, attempt: entry.attempts + 1 };
    try {
      const octokit = await auth.octokitFor(`${entry.owner}/${entry.repo}`);
      await octokit.rest.repos.createCommitStatus({
        owner: entry.owner,
        repo: entry.repo,
        sha: entry.sha,
        state: entry.state,
        context: entry.context,
        target_url: entry.targetUrl,
        description: entry.description,
      });
      if (closed) return;
      outbox.remove(entry.id);
      log.debug(fields, 'commit status posted');
    } catch (err) {
      if (closed) return;
      if (isPermanent(err)) {
        outbox.remove(entry.id);
        log.error({ ...fields, err: toMessage(err) }, 'commit status refused by GitHub; given up');
        return;
      }
      // a newer status of the same context may have replaced this one meanwhile
      if (outbox.has(entry.id)) outbox.retryAt(entry.id, now() + toRetryDelay(entry.attempts), toMessage(err));
      log.warn({ ...fields, err: toMessage(err) }, 'commit status post failed; will retry');
    }
  }

  async function publishBuild(build: Build): Promise<void> {
    const [owner, repo] = build.repo.split('/') as [string, string];
    outbox.enqueue(
      {
        buildId: build.id,
        owner,
        repo,
        sha: build.sha,
        context: build.context,
        state: toCommitStatusState(build.state),
        targetUrl: `${publicUrl.replace(/\/+$/, '')}/builds/${build.id}`,
        description: toDescription(build.description ?? build.state),
      },
      now(),
    );
    // stored, then posted: the outbox's writer commits it first (a refused write rejects here)
    await outbox.flush();
    void sender.send();
  }

  void sender.send(); // what an earlier process left
  return {
    publish(build) {
      return sender.track(publishBuild(build));
    },
    publishStatus(status) {
      return sender.track(
        (async () => {
          outbox.enqueue({ ...status, description: toDescription(status.description) }, now());
          await outbox.flush();
          void sender.send();
        })(),
      );
    },
    flush() {
      return sender.flush();
    },
    close() {
      closed = true;
      sender.close();
      outbox.close();
    },
  };
}
