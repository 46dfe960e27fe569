import Router from '@koa/router';
import type { WebhookRegistrar } from '../github/webhook-registration.js';

/**
 * `GET /api/webhooks`: the last webhook registration run as
 * `{ enabled, at, registrations: [{ repository, outcome, hookId | status, reason, changed? }] }`;
 * `enabled` is false when registration is off or skipped (`registrar` null), `at` is null
 * until the first run has finished. Open like the other reads that are not pages; it holds
 * no secret.
 */
export function createWebhookRegistrationRoutes(deps: { registrar: WebhookRegistrar | null }): Router {
  const router = new Router();
  router.get('/api/webhooks', (ctx) => {
    const last = deps.registrar?.last() ?? null;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { enabled: deps.registrar !== null, at: last?.at ?? null, registrations: last?.registrations ?? [] };
  });
  return router;
}
