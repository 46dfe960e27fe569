import Router from '@koa/router';
import type { WebhookRegistrar } from '../github/webhook-registration.js';
import type { RouteGuards } from './route-access.js';

/**
 * `GET /api/webhooks`: the last webhook registration run as
 * `{ enabled, at, registrations: [{ repository, outcome, hookId | status, reason, changed? }] }`;
 * `enabled` is false when registration is off or skipped (`registrar` null), `at` is null
 * until the first run has finished. Protected: it names the repositories and their hooks.
 */
export function createWebhookRegistrationRoutes(deps: { access: RouteGuards; registrar: WebhookRegistrar | null }): Router {
  const router = new Router();
  router.get('/api/webhooks', deps.access.protected, (ctx) => {
    const last = deps.registrar?.last() ?? null;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { enabled: deps.registrar !== null, at: last?.at ?? null, registrations: last?.registrations ?? [] };
  });
  return router;
}
