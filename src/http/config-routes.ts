import Router from '@koa/router';
import type { ConfigRepository } from '../config-repo/config-repository.js';
import { toMatchAnswer } from '../config-repo/match-answer.js';
import { AppError } from '../errors.js';
import type { RouteGuards } from './route-access.js';

const one = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value[0] : value);

/**
 * The config repository API:
 * - `GET /api/config`: the source, the active snapshot (config sha, digest, when it was
 *   activated, every definition file with its `on:` and builds), the last refused revision
 *   with every problem (file, line, key, message), and the last reload;
 * - `GET /api/config/match?repo=owner/name&ref=refs/heads/x`: a dry run: which builds that
 *   ref would run, from which files, and why each file of the repository matched or not
 *   ({@link toMatchAnswer}; 400 for a missing or unsafe `repo` or `ref`);
 * - `POST /api/config/reload` (bearer token): reloads now and answers the outcome.
 * The reads are protected (the definitions carry their `env`).
 */
export function createConfigRoutes(deps: { access: RouteGuards; configRepository: ConfigRepository }): Router {
  const router = new Router();
  router.get('/api/config', deps.access.protected, (ctx) => {
    ctx.body = deps.configRepository.status();
  });
  router.get('/api/config/match', deps.access.protected, async (ctx) => {
    const repo = one(ctx.query['repo']);
    const ref = one(ctx.query['ref']);
    if (repo === undefined || ref === undefined)
      throw new AppError('BAD_REQUEST', 'give repo=owner/name and ref=refs/heads/<branch> or refs/tags/<tag>', { status: 400 });
    const [owner, name, ...rest] = repo.split('/');
    if (owner === undefined || name === undefined || rest.length > 0) throw new AppError('BAD_REQUEST', 'repo must be owner/name', { status: 400 });
    ctx.body = toMatchAnswer(repo, ref, await deps.configRepository.lookup({ owner, repo: name, ref }));
  });
  router.post('/api/config/reload', deps.access.token, async (ctx) => {
    ctx.body = await deps.configRepository.reload('api');
  });
  return router;
}
