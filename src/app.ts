import Koa from 'koa';
import Router from '@koa/router';
import type { ArtifactStore } from './artifacts/artifact-store.js';
import type { BuildEvents } from './builds/build-events.js';
import type { BuildLogs } from './builds/build-log.js';
import type { Checkout } from './builds/checkout.js';
import type { Coordinator } from './builds/coordinator.js';
import { createWorkerRoutes } from './http/worker-routes.js';
import type { WorkerDispatch } from './server/worker-dispatch.js';
import { createArtifactRoutes } from './http/artifact-routes.js';
import { createControlRoutes } from './http/control-routes.js';
import { createAssetRoutes } from './http/asset-routes.js';
import { createBadgeRoutes } from './http/badge-routes.js';
import { createBuildRoutes } from './http/build-routes.js';
import { errorHandler } from './http/error-handler.js';
import { createLogRoutes } from './http/log-routes.js';
import { createMetricsRoutes } from './http/metrics-routes.js';
import { createMonitorRoutes } from './http/monitor-routes.js';
import type { PageAuth } from './http/page-auth.js';
import { assertRoutesGuarded, createRouteGuards } from './http/route-access.js';
import { createConfigRoutes } from './http/config-routes.js';
import { createGitHubRoutes } from './http/github-routes.js';
import { createWebhookRegistrationRoutes } from './http/webhook-registration-routes.js';
import { createWebhookRoutes } from './http/webhook-routes.js';
import type { GitHubAuth } from './github/github-auth.js';
import type { WebhookRegistrar } from './github/webhook-registration.js';
import type { ConfigRepository } from './config-repo/config-repository.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics/metrics.js';
import type { BuildStore } from './store/build-store.js';
import type { DeadRefs } from './store/sqlite-dead-refs.js';
import type { Inbox } from './webhooks/inbox.js';
import type { SignatureVerifier } from './webhooks/verify-signature.js';

/** Everything the HTTP app needs, made by the composition root. */
export interface AppDeps {
  coordinator: Coordinator;
  store: BuildStore;
  logs: BuildLogs;
  artifacts: ArtifactStore;
  verify: SignatureVerifier;
  /** the build definitions: reloaded on a push to it, shown at /api/config */
  configRepository: ConfigRepository;
  /** the durable inbox webhook deliveries are stored in before they are answered */
  inbox: Inbox;
  /** marks of deleted refs and closed pull requests, for retention */
  deadRefs?: Pick<DeadRefs, 'mark'>;
  /** absolute base URL of this server as clients and GitHub reach it */
  publicUrl: string;
  log: Logger;
  /** what the control API (manual trigger, rebuild, cancel) needs */
  control: { checkout: Checkout; token: string | undefined; cloneUrlRewrites: readonly { from: string; to: string }[]; gitHost: string };
  /** build events, for the live log stream's build updates and the API's `?wait=` */
  events: BuildEvents;
  metrics: Metrics;
  /** who may see the pages (see config `pages.credentials`) */
  pageAuth: PageAuth;
  /** the webhook registrar whose last run GET /api/webhooks shows; null when registration is off */
  webhookRegistrar: WebhookRegistrar | null;
  /** build workers (bullmq dispatch); null when builds run here */
  workers: WorkerDispatch | null;
  /** bytes a build's artifact may have (a worker's upload too) */
  maxArtifactBytes: number;
  /** the server's GitHub credentials: shown at GET /api/github, their installation cache dropped by installation webhooks */
  githubAuth: GitHubAuth;
  /** the GitHub App's id (config `github.app.appId`), whose check runs a re-run webhook may name; absent without an App */
  githubAppId?: number | undefined;
}

/**
 * Creates the koa app with every route mounted; it does not listen (tests run it on port 0).
 * Every route starts with the guard of its access (`open`, `protected` or `token`, see
 * http/route-access.ts); throws AppError `INTERNAL` when one does not, so no route is served
 * that nobody decided the access of.
 */
export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  app.proxy = false;
  app.silent = true;
  app.use(errorHandler(deps.log.child({ component: 'http' })));
  const access = createRouteGuards({ pageAuth: deps.pageAuth, token: deps.control.token, workerTokens: deps.workers?.tokens ?? {} });
  const health = new Router();
  health.get('/healthz', access.open, (ctx) => {
    ctx.body = { ok: true };
  });
  for (const router of [
    health,
    createWebhookRoutes({
      access,
      verify: deps.verify,
      inbox: deps.inbox,
      store: deps.store,
      appId: deps.githubAppId,
      deadRefs: deps.deadRefs,
      coordinator: deps.coordinator,
      configRepository: deps.configRepository,
      installations: deps.githubAuth,
      log: deps.log.child({ component: 'webhooks' }),
    }),
    createArtifactRoutes({ access, store: deps.store, artifacts: deps.artifacts }),
    createControlRoutes({ access, coordinator: deps.coordinator, store: deps.store, events: deps.events, publicUrl: deps.publicUrl, ...deps.control }),
    createConfigRoutes({ access, configRepository: deps.configRepository }),
    createGitHubRoutes({ access, auth: deps.githubAuth, repositories: () => deps.configRepository.repositories() }),
    createBuildRoutes({ access, store: deps.store, logs: deps.logs, events: deps.events, publicUrl: deps.publicUrl }),
    createLogRoutes({ access, store: deps.store, logs: deps.logs, events: deps.events, publicUrl: deps.publicUrl }),
    createMonitorRoutes({ access, socketToken: deps.pageAuth.socketToken }),
    createBadgeRoutes({ access, store: deps.store }),
    createMetricsRoutes({ access, metrics: deps.metrics }),
    createWebhookRegistrationRoutes({ access, registrar: deps.webhookRegistrar }),
    createAssetRoutes({ access }),
    createWorkerRoutes({
      access,
      workers: deps.workers,
      artifacts: deps.artifacts,
      maxArtifactBytes: deps.maxArtifactBytes,
      log: deps.log.child({ component: 'workers' }),
    }),
  ]) {
    app.use(router.routes());
    app.use(router.allowedMethods());
  }
  assertRoutesGuarded(app, access);
  return app;
}
