import type { BuildLogs } from '../builds/build-log.js';
import type { BuildReporter } from '../builds/build-reporter.js';
import type { Config } from '../config/schema.js';
import { formatProblem } from '../config-repo/definition.js';
import type { ConfigRepository } from '../config-repo/config-repository.js';
import { toMessage } from '../errors.js';
import { createBuildReporter } from '../github/build-reporting.js';
import { toConfigOutput, toProblemAnnotations } from '../github/check-run-output.js';
import { createCheckRunPublisher, type CheckRunPublisher } from '../github/check-runs.js';
import { createCommitStatusPublisher, createOctokit, type CommitStatusPublisher } from '../github/commit-statuses.js';
import { createGitHubAuth } from '../github/create-github-auth.js';
import type { GitHubAuth } from '../github/github-auth.js';
import { toReporting, type Reporting } from '../github/reporting.js';
import { createWebhookRegistrar, type WebhookRegistrar } from '../github/webhook-registration.js';
import type { Logger } from '../logger.js';
import type { CheckRunOutbox } from '../store/check-run-outbox.js';
import type { StatusOutbox } from '../store/status-outbox.js';

/** What the server says to GitHub: commit statuses and check runs (each through its durable outbox) and its webhooks. */
export interface GitHubSide {
  /** the one source of GitHub credentials (token, App installation tokens, or none); closed by the caller */
  auth: GitHubAuth;
  statuses: CommitStatusPublisher;
  /** check runs of builds and of config repository commits (when `github.reporting` is `checks` or `both`) */
  checks: CheckRunPublisher;
  /** the effective `github.reporting` (see `toReporting`) */
  reporting: Reporting;
  /** where builds are reported: commit statuses, check runs or both, by `reporting` */
  reports: BuildReporter;
  /** null when `github.registerWebhooks` is off or cannot work (see {@link createWebhookRegistrarFor}) */
  webhookRegistrar: WebhookRegistrar | null;
  /**
   * Reports `autobuilder/config` on each config repository commit a reload activates or
   * refuses (a commit status, a check run with an annotation at each problem, or both, by
   * `reporting`), and registers webhooks again when a revision adds or removes a repository.
   */
  follow(configRepository: ConfigRepository): void;
  /** Registers the webhooks of the repositories configured now, in the background (failures are logged, never thrown). */
  registerWebhooks(configRepository: ConfigRepository): void;
}

/**
 * Creates the GitHub side: the credentials ({@link createGitHubAuth}) and the commit status
 * publisher over `outbox` (closed by its `close`), both with `fetch` (instrumented by the
 * metrics), and the webhook registrar, which uses the plain `registrarFetch` (the metrics'
 * failure counter is about commit statuses).
 */
export function createGitHubSide(options: {
  config: Readonly<Config>;
  outbox: StatusOutbox;
  /** the check runs' outbox (closed by the publisher's `close`) */
  checkOutbox: CheckRunOutbox;
  /** build logs, whose lines become each check run's annotations and log tail */
  logs: Pick<BuildLogs, 'onAppend' | 'onClose' | 'readLines' | 'stat'>;
  publicUrl: string;
  webhookSecret: string;
  fetch: typeof globalThis.fetch;
  registrarFetch: typeof globalThis.fetch | undefined;
  log: Logger;
}): GitHubSide {
  const { config, publicUrl, log } = options;
  const auth = createGitHubAuth(config, { log, fetch: options.fetch });
  const statuses = createCommitStatusPublisher({
    auth,
    outbox: options.outbox,
    writeIntervalMs: config.github.writeIntervalMs,
    apiUrl: config.github.apiUrl,
    token: config.github.token,
    publicUrl,
    log: log.child({ component: 'github' }),
    fetch: options.fetch,
  });
  const reporting = toReporting(config);
  const checks = createCheckRunPublisher({
    auth,
    outbox: options.checkOutbox,
    logs: options.logs,
    publicUrl,
    log: log.child({ component: 'check-runs' }),
  });
  const reports = createBuildReporter({ reporting, statuses, checks });
  const withStatuses = reporting === 'statuses' || reporting === 'both';
  const withChecks = reporting === 'checks' || reporting === 'both';
  const webhookRegistrar = createWebhookRegistrarFor(config, {
    publicUrl,
    webhookSecret: options.webhookSecret,
    fetch: options.registrarFetch,
    log,
  });
  const syncFailed = (err: unknown) => log.error({ err: toMessage(err) }, 'webhook registration failed');
  /** the repositories registered last, one a line */
  let registered: string | null = null;
  const register = (repositories: readonly string[]): void => {
    if (webhookRegistrar === null) return;
    registered = repositories.join('\n');
    webhookRegistrar.sync(repositories).catch(syncFailed);
  };

  return {
    auth,
    statuses,
    checks,
    reporting,
    reports,
    webhookRegistrar,
    follow(configRepository) {
      configRepository.onReload((outcome, status) => {
        const repository = status.source.repository;
        if (repository === null || outcome.sha === null || (outcome.outcome !== 'activated' && outcome.outcome !== 'rejected')) return;
        const [owner = '', repo = ''] = repository.split('/');
        const { problems } = outcome;
        const sha = outcome.sha;
        if (withChecks) {
          const activated = outcome.outcome === 'activated';
          const output = toConfigOutput(
            activated ? { activated, files: status.active?.files.length ?? 0 } : { activated, problems },
            `${publicUrl}/api/config`,
          );
          const at = outcome.at;
          checks
            .publishCheck({
              key: `config:${repository}@${sha}`,
              owner,
              repo,
              headSha: sha,
              name: 'autobuilder/config',
              externalId: `config@${sha.slice(0, 12)}`,
              detailsUrl: `${publicUrl}/api/config`,
              state: { status: 'completed', conclusion: activated ? 'success' : 'failure', startedAt: at, completedAt: at, output },
              annotations: activated ? [] : toProblemAnnotations(problems),
            })
            .catch((err: unknown) => log.error({ err: toMessage(err), sha }, 'config check run not queued'));
        }
        if (!withStatuses) return;
        statuses
          .publishStatus({
            buildId: `config@${outcome.sha.slice(0, 12)}`,
            owner,
            repo,
            sha: outcome.sha,
            context: 'autobuilder/config',
            state: outcome.outcome === 'activated' ? 'success' : 'error',
            targetUrl: `${publicUrl}/api/config`,
            description:
              outcome.outcome === 'activated'
                ? `Active: ${status.active?.files.length ?? 0} definition files`
                : `Refused: ${problems.length} problem${problems.length === 1 ? '' : 's'}; ${problems[0] === undefined ? '' : formatProblem(problems[0])}`,
          })
          .catch((err: unknown) => log.error({ err: toMessage(err), sha: outcome.sha }, 'config status not queued'));
      });
      // a config revision that adds or removes a repository registers again (not every poll);
      // nothing before the first registration
      configRepository.onReload((outcome) => {
        const repositories = configRepository.repositories();
        if (registered === null || outcome.outcome !== 'activated' || repositories.join('\n') === registered) return;
        register(repositories);
      });
    },
    registerWebhooks(configRepository) {
      register(configRepository.repositories());
    },
  };
}

/**
 * The webhook registrar when `github.registerWebhooks` is on (hook URL `<publicUrl>/hooks/github`),
 * else null; also null, with one warning, when `publicUrl` or `github.token` is missing: GitHub
 * must reach the URL, and only a token may manage hooks. In GitHub App mode it is null, said
 * once: the App's one webhook (set in its settings) brings the events of every installation.
 */
function createWebhookRegistrarFor(
  config: Readonly<Config>,
  options: { publicUrl: string; webhookSecret: string; fetch: typeof globalThis.fetch | undefined; log: Logger },
): WebhookRegistrar | null {
  if (!config.github.registerWebhooks) return null;
  const log = options.log.child({ component: 'webhook-registration' });
  if (config.github.app !== undefined) {
    log.info('GitHub App mode: webhooks are not registered per repository; the App has one webhook (its settings on GitHub)');
    return null;
  }
  const token = config.github.token;
  if (config.publicUrl === undefined || token === undefined) {
    const missing = [...(config.publicUrl === undefined ? ['publicUrl'] : []), ...(token === undefined ? ['github.token'] : [])];
    log.warn({ missing }, 'github.registerWebhooks is on but publicUrl or github.token is not set: webhooks are not registered');
    return null;
  }
  const octokit = createOctokit({ apiUrl: config.github.apiUrl, token, log, fetch: options.fetch, writeIntervalMs: config.github.writeIntervalMs });
  return createWebhookRegistrar({ octokit, hookUrl: `${options.publicUrl}/hooks/github`, secret: options.webhookSecret, log });
}
