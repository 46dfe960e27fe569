import Router from '@koa/router';
import type { GitHubAuth } from '../github/github-auth.js';
import type { RouteGuards } from './route-access.js';

/**
 * `GET /api/github` (protected, like /api/config): how the server reaches GitHub. `mode`
 * (`app`, `token` or `none`), the App's id in App mode, and for each repository the config
 * repository names, its App installation id or the error that keeps the server from it
 * (`GITHUB_APP_NOT_INSTALLED`, `GITHUB_APP_KEY_REFUSED`, …, with a message; see
 * {@link GitHubAuth.status}), from the same cache the server's GitHub calls use. It holds no
 * token, key or secret.
 */
export function createGitHubRoutes(deps: { access: RouteGuards; auth: Pick<GitHubAuth, 'status'>; repositories: () => readonly string[] }): Router {
  const router = new Router();
  router.get('/api/github', deps.access.protected, async (ctx) => {
    ctx.body = await deps.auth.status(deps.repositories());
  });
  return router;
}
