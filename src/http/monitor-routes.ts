import Router from '@koa/router';
import { renderMonitorPage, sendPage } from './build-page.js';

/** `GET /monitor`: the realtime page (its script talks to the socket.io hub on the same server). */
export function createMonitorRoutes(deps: { socketToken: string | null }): Router {
  const router = new Router();
  router.get('/monitor', (ctx) => {
    sendPage(ctx, renderMonitorPage({ socketToken: deps.socketToken }));
  });
  return router;
}
