import { Octokit } from '@octokit/rest';
import type { Build, BuildState } from '../builds/build.js';
import { toMessage } from '../errors.js';
import type { Logger } from '../logger.js';

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
  /** Posts the status of `build` as it is now on its commit; resolves once GitHub answered (or failed). */
  publish(build: Build): Promise<void>;
}

/**
 * Creates the publisher over @octokit/rest. `apiUrl` is GitHub's REST base URL
 * (`https://api.github.com`, a GHES `/api/v3` URL, or a test stand-in). With no `token`
 * every post is skipped, said once in the log. `fetch` may be injected (tests).
 */
export function createCommitStatusPublisher(options: {
  apiUrl: string;
  token: string | undefined;
  publicUrl: string;
  log: Logger;
  fetch?: typeof globalThis.fetch;
}): CommitStatusPublisher {
  const { log, publicUrl } = options;
  if (options.token === undefined) {
    log.info('no GitHub token configured: commit statuses are skipped');
    return { publish: async () => undefined };
  }
  const octokit = new Octokit({
    auth: options.token,
    baseUrl: options.apiUrl.replace(/\/+$/, ''),
    userAgent: 'autobuilder',
    log: { debug: () => undefined, info: () => undefined, warn: (m: string) => log.warn(m), error: (m: string) => log.error(m) },
    ...(options.fetch === undefined ? {} : { request: { fetch: options.fetch } }),
  });
  return {
    async publish(build) {
      const [owner, repo] = build.repo.split('/') as [string, string];
      const state = toCommitStatusState(build.state);
      const description = toDescription(build.description ?? build.state);
      try {
        await octokit.rest.repos.createCommitStatus({
          owner,
          repo,
          sha: build.sha,
          state,
          context: build.context,
          target_url: `${publicUrl.replace(/\/+$/, '')}/builds/${build.id}`,
          description,
        });
        log.debug({ buildId: build.id, state, context: build.context }, 'commit status posted');
      } catch (err) {
        log.warn({ buildId: build.id, state, err: toMessage(err) }, 'commit status post failed');
      }
    },
  };
}
