import Router from '@koa/router';
import { renderMonitorPage, sendPage } from './build-page.js';
import type { RouteGuards } from './route-access.js';

/** `GET /monitor`: the realtime page (its script talks to the socket.io hub on the same server). */
export function createMonitorRoutes(deps: { access: RouteGuards; socketToken: string | null }): Router {
  const router = new Router();
  router.get('/monitor', deps.access.protected, (ctx) => {
    sendPage(ctx, renderMonitorPage({ socketToken: deps.socketToken }));
  });
  return router;
}
