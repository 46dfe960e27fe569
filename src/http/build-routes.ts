import Router from '@koa/router';
import { z } from 'zod';
import type { Build } from '../builds/build.js';
import type { BuildEvents } from '../builds/build-events.js';
import type { BuildLogs } from '../builds/build-log.js';
import { waitForEnd } from '../builds/wait-for-end.js';
import { AppError } from '../errors.js';
import type { BuildQuery, BuildStore } from '../store/build-store.js';
import { renderBuildPage, sendPage } from './build-page.js';
import { toBuildView } from './build-view.js';
import { findBuild } from './find-build.js';
import type { RouteGuards } from './route-access.js';
import { parseWaitMs, toClosedSignal } from './wait-query.js';

const listQuery = z
  .object({
    repo: z.string().max(201).optional(),
    ref: z.string().max(300).optional(),
    branch: z.string().min(1).max(255).optional(),
    state: z.enum(['queued', 'running', 'success', 'failure', 'error', 'cancelled']).optional(),
    limit: z.coerce.number().int().min(1).max(500).optional(),
    cursor: z
      .string()
      .regex(/^[a-z0-9-]{1,64}$/, 'a cursor is the nextCursor of an earlier page')
      .optional(),
  })
  .strict()
  .refine((q) => q.ref === undefined || q.branch === undefined, { message: 'give ref or branch, not both', path: ['branch'] });

/** How many log lines the build page carries for browsers without JavaScript. */
const NOSCRIPT_LINES = 200;

/** How many builds `GET /build/history` shows, as the seed 0-autobuilder did. */
export const HISTORY_LENGTH = 25;

/** One page of history, newest first, and the cursor of the next page (null on the last). */
export interface BuildPage {
  builds: Build[];
  nextCursor: string | null;
}

/**
 * Lists builds newest first, one page at a time: without `cursor` the newest `limit` (default
 * 50) builds matching the filters, with it the `limit` builds just older than that build id
 * (ids sort by creation time).
 */
export function listBuildPage(store: BuildStore, query: BuildQuery & { cursor?: string }): BuildPage {
  const limit = Math.min(Math.max(query.limit ?? 50, 1), 500);
  const { cursor, ...filters } = query;
  let builds: Build[];
  if (cursor === undefined) {
    builds = store.list({ ...filters, limit });
  } else {
    // one range of an index from the cursor build on (see BuildQuery.beforeId)
    builds = store.list({ ...filters, limit, beforeId: cursor });
  }
  return { builds, nextCursor: builds.length === limit ? (builds.at(-1)?.id ?? null) : null };
}

/**
 * The read side of the HTTP contract (DESIGN §6): `GET /api/builds` (filters `repo`, `ref` or
 * `branch`, `state`; pages of `limit` with `cursor`), `/api/builds/:id` (with `?wait=SECONDS`:
 * answered when the build has ended or the wait expired, 200 either way), the seed's
 * `/build/status` (running builds) and `/build/history` (the last 25), and the HTML page
 * `/builds/:id`. Artifacts are served by artifact-routes.ts, logs by log-routes.ts.
 */
export function createBuildRoutes(deps: { access: RouteGuards; store: BuildStore; logs: BuildLogs; events: BuildEvents; publicUrl: string }): Router {
  const { access, store, logs, publicUrl } = deps;
  const router = new Router();
  const views = (builds: Build[]) => builds.map((b) => toBuildView(b, publicUrl));

  router.get('/api/builds', access.protected, (ctx) => {
    const parsed = listQuery.safeParse(ctx.query);
    if (!parsed.success) {
      throw new AppError('BAD_REQUEST', parsed.error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '), { status: 400 });
    }
    const q = parsed.data;
    const ref = q.branch === undefined ? q.ref : `refs/heads/${q.branch}`;
    const page = listBuildPage(store, {
      ...(q.repo === undefined ? {} : { repo: q.repo }),
      ...(ref === undefined ? {} : { ref }),
      ...(q.state === undefined ? {} : { state: q.state }),
      ...(q.limit === undefined ? {} : { limit: q.limit }),
      ...(q.cursor === undefined ? {} : { cursor: q.cursor }),
    });
    if (page.nextCursor !== null) {
      const next = new URLSearchParams();
      for (const [key, value] of Object.entries(q)) if (value !== undefined && key !== 'cursor') next.set(key, String(value));
      next.set('cursor', page.nextCursor);
      ctx.set('Link', `<${publicUrl}/api/builds?${next.toString()}>; rel="next"`);
    }
    ctx.body = { builds: views(page.builds), nextCursor: page.nextCursor };
  });

  router.get('/api/builds/:id', access.protected, async (ctx) => {
    const waitMs = parseWaitMs(ctx);
    const build = findBuild(store, ctx.params['id'] ?? '');
    if (waitMs === null) {
      ctx.body = toBuildView(build, publicUrl);
      return;
    }
    const { builds } = await waitForEnd({ store, events: deps.events }, [build.id], { timeoutMs: waitMs, signal: toClosedSignal(ctx) });
    ctx.body = toBuildView(builds[0] ?? build, publicUrl);
  });

  router.get('/build/status', access.protected, (ctx) => {
    ctx.body = { builds: views(store.list({ state: 'running', limit: 500 })) };
  });

  router.get('/build/history', access.protected, (ctx) => {
    ctx.body = { builds: views(store.list({ limit: HISTORY_LENGTH })) };
  });

  router.get('/builds/:id', access.protected, async (ctx) => {
    const build = findBuild(store, ctx.params['id'] ?? '');
    const tail = (await logs.readLines(build.id, { tail: NOSCRIPT_LINES })) ?? { start: 1, lines: [] };
    sendPage(ctx, renderBuildPage(toBuildView(build, publicUrl), tail));
  });

  return router;
}
