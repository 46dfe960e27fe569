export {
  createCommitStatusPublisher,
  createOctokit,
  toCommitStatusState,
  toDescription,
  MAX_DESCRIPTION,
  type CommitStatusPublisher,
  type CommitStatusState,
} from './commit-statuses.js';
export {
  createWebhookRegistrar,
  ensureWebhooks,
  WEBHOOK_EVENTS,
  type EnsureWebhooksOptions,
  type RegistrationOutcome,
  type RegistrationReport,
  type WebhookRegistrar,
  type WebhookRegistrationRun,
  type WebhookSetting,
} from './webhook-registration.js';
export { createGitHubAuth } from './create-github-auth.js';
export { createGitHubAppAuth, readGitHubAppKey, toRefreshAt, type GitHubAppSettings } from './github-app-auth.js';
export {
  createTokenAuth,
  GitHubAuthError,
  type GitHubAuth,
  type GitHubAuthErrorCode,
  type GitHubAuthMode,
  type GitHubAuthStatus,
  type GitTokenOptions,
  type RepositoryAuthStatus,
} from './github-auth.js';
export { toReporting, type Reporting } from './reporting.js';
export { createBuildReporter } from './build-reporting.js';
export { createCheckRunPublisher, CHECK_RUN_INTERVAL_MS, MAX_BUILD_ANNOTATIONS, type CheckRunPublisher, type NewCheckRun } from './check-runs.js';
export { MAX_OUTPUT_BYTES, REBUILD_ACTION, toBuildOutput, toConclusion, toConfigOutput, toProblemAnnotations } from './check-run-output.js';
