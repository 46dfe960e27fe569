import Router from '@koa/router';
import type { Metrics } from '../metrics/metrics.js';
import type { RouteGuards } from './route-access.js';

/** `GET /metrics`: the Prometheus text exposition of `metrics.registry`. */
export function createMetricsRoutes(deps: { access: RouteGuards; metrics: Metrics }): Router {
  const router = new Router();
  router.get('/metrics', deps.access.open, async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.type = deps.metrics.registry.contentType;
    ctx.body = await deps.metrics.registry.metrics();
  });
  return router;
}
