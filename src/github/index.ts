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
