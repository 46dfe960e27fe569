import { createHash } from 'node:crypto';
import Router from '@koa/router';
import { assertRepoName } from '../builds/refs.js';
import { AppError } from '../errors.js';
import type { BuildStore } from '../store/build-store.js';
import { toBadgeStatus, toBadgeSvg } from './badge.js';
import type { RouteGuards } from './route-access.js';

/**
 * `GET /badge/:owner/:repo/:branch.svg`: the status of a branch as an SVG badge (a branch with
 * slashes keeps them: `/badge/acme/widget/feature/x.svg`). `?definition=` picks one build of
 * the branch, `?label=` changes the left text. Never cached for long: `no-cache` with an ETag.
 */
export function createBadgeRoutes(deps: { access: RouteGuards; store: BuildStore }): Router {
  const router = new Router();
  router.get(/^\/badge\/([^/]+)\/([^/]+)\/(.+)\.svg$/, deps.access.open, (ctx) => {
    let parts: string[];
    try {
      parts = (ctx.captures ?? []).map((c) => decodeURIComponent(c));
    } catch {
      throw new AppError('BAD_REQUEST', 'malformed percent-encoding in the path', { status: 400 });
    }
    const [owner = '', repo = '', branch = ''] = parts;
    assertRepoName(owner, 'owner');
    assertRepoName(repo, 'repository name');
    if (branch === '' || branch.length > 255 || branch.split('/').some((part) => part === '' || part === '.' || part === '..')) {
      throw new AppError('BAD_REQUEST', 'not a branch name', { status: 400 });
    }
    const definition = typeof ctx.query['definition'] === 'string' ? ctx.query['definition'] : null;
    const label = typeof ctx.query['label'] === 'string' && ctx.query['label'].length <= 40 ? ctx.query['label'] : 'autobuilder';
    const builds = deps.store
      .list({ repo: `${owner}/${repo}`, ref: `refs/heads/${branch}`, limit: 100 })
      .filter((b) => definition === null || b.definition === definition);
    const svg = toBadgeSvg(label, toBadgeStatus(builds));
    const etag = `"${createHash('sha256').update(svg).digest('base64url').slice(0, 22)}"`;
    ctx.set('ETag', etag);
    ctx.set('Cache-Control', 'no-cache, max-age=0');
    ctx.set('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'");
    ctx.set('X-Content-Type-Options', 'nosniff');
    if (ctx.get('If-None-Match') === etag) {
      ctx.status = 304;
      return;
    }
    ctx.type = 'image/svg+xml';
    ctx.body = svg;
  });
  return router;
}
