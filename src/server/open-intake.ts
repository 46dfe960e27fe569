import { join } from 'node:path';
import type Router from '@koa/router';
import type { Coordinator } from '../builds/coordinator.js';
import type { ConfigRepository } from '../config-repo/config-repository.js';
import type { GitHubAuth } from '../github/github-auth.js';
import type { PageAuth } from '../http/page-auth.js';
import { createRouteGuards } from '../http/route-access.js';
import { createWebhookRoutes } from '../http/webhook-routes.js';
import type { Logger } from '../logger.js';
import type { BuildStore } from '../store/build-store.js';
import { createDeliveryWriter } from '../store/delivery-writer.js';
import type { DeadRefs } from '../store/sqlite-dead-refs.js';
import { createInbox, type Inbox } from '../webhooks/inbox.js';
import { createSignatureVerifier, type SignatureVerifier } from '../webhooks/verify-signature.js';

/** Where webhook deliveries come in: taken in while the server starts, built once it has. */
export interface Intake {
  inbox: Inbox;
  verify: SignatureVerifier;
  /** the webhook routes for the start-up gate (see StartUpGate.acceptWebhooks) */
  routes: Router;
  /** Says the coordinator has resumed its queued builds: closed pull requests' cancels held until then go on. */
  resumed(): void;
  /** Commits the deliveries being written, then stops the writer thread. */
  close(): Promise<void>;
}

/**
 * Opens the delivery writer on `<dataDir>/autobuilder.db` and the inbox over it, and makes
 * the webhook routes the server answers with while it starts: webhooks taken in then are
 * stored now and built once started (Inbox.recover); a closed pull request's waiting builds
 * are cancelled once the queued ones are resumed ({@link Intake.resumed}).
 */
export async function openIntake(options: {
  dataDir: string;
  store: BuildStore;
  deadRefs: DeadRefs;
  coordinator: Coordinator;
  configRepository: ConfigRepository;
  pageAuth: PageAuth;
  apiToken: string | undefined;
  webhookSecret: string;
  /** the GitHub App's id (config `github.app.appId`), whose check runs a re-run webhook may name; absent without an App */
  githubAppId?: number | undefined;
  /** the GitHub App's cache of installations, dropped by installation webhooks */
  installations?: Pick<GitHubAuth, 'forget'> | undefined;
  log: Logger;
}): Promise<Intake> {
  const { coordinator, log } = options;
  // its thread starts with the first delivery: an idle server holds none
  const writer = createDeliveryWriter({ path: join(options.dataDir, 'autobuilder.db') });
  const inbox = createInbox({ store: options.store, writer, coordinator, log: log.child({ component: 'webhooks' }) });
  const verify = createSignatureVerifier(options.webhookSecret);
  let resumed: () => void = () => undefined;
  const whenResumed = new Promise<void>((ok) => (resumed = ok));
  const routes = createWebhookRoutes({
    access: createRouteGuards({ pageAuth: options.pageAuth, token: options.apiToken }),
    verify,
    inbox,
    store: options.store,
    appId: options.githubAppId,
    installations: options.installations,
    deadRefs: options.deadRefs,
    coordinator: { cancelPullRequest: async (target, reason) => whenResumed.then(() => coordinator.cancelPullRequest(target, reason)) },
    configRepository: options.configRepository,
    log: log.child({ component: 'webhooks' }),
  });
  return { inbox, verify, routes, resumed: () => resumed(), close: () => writer.close() };
}
