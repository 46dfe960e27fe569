import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { BuildEvents } from '../builds/build-events.js';
import type { BuildRequest } from '../builds/build-request.js';
import { toCloneUrl, type Checkout } from '../builds/checkout.js';
import type { Coordinator } from '../builds/coordinator.js';
import { assertRepoName, isSha, parseRef } from '../builds/refs.js';
import { waitForEnd } from '../builds/wait-for-end.js';
import { AppError } from '../errors.js';
import type { BuildStore } from '../store/build-store.js';
import { toBuildView } from './build-view.js';
import { jsonBody } from './json-body.js';
import type { RouteGuards } from './route-access.js';
import { parseWaitMs, toClosedSignal } from './wait-query.js';

/** Seconds a client is told to wait when the backlog is full. */
export const RETRY_AFTER_SECONDS = 30;

const triggerSchema = z
  .object({
    repo: z.string().regex(/^[^/]+\/[^/]+$/, 'owner/name'),
    ref: z.string().min(1).max(300),
    sha: z
      .string()
      .regex(/^[0-9a-f]{40}$/, '40 hex')
      .optional(),
    force: z.boolean().optional(),
    /** parameter values by name; names and values are checked against the definitions (422 naming each bad one) */
    params: z.record(z.string().max(256), z.string().max(64 * 1024)).optional(),
  })
  .strict();

/**
 * The control API (bearer token): `POST /api/builds` (manual trigger; 503 with
 * `Retry-After` when the backlog is full), `POST /api/builds/:id/rebuild` (`{ force }`),
 * `POST /api/builds/:id/cancel`; and `GET /api/queue` (protected, like the other reads).
 * A trigger or rebuild with `?wait=SECONDS` (see wait-query.ts) answers 200 with the builds
 * once they have all ended, or 202 with them as they are when the wait expires; a client
 * that goes away stops only its wait, never the builds.
 */
export function createControlRoutes(deps: {
  access: RouteGuards;
  coordinator: Coordinator;
  store: BuildStore;
  /** build events: a `?wait=` ends with the builds' ends */
  events: BuildEvents;
  checkout: Checkout;
  publicUrl: string;
  cloneUrlRewrites: readonly { from: string; to: string }[];
  /** host repositories are cloned from when no webhook named a clone URL: `github.com`, or a GitHub Enterprise Server's (see toGitHost) */
  gitHost: string;
}): Router {
  const { access, coordinator, store, publicUrl } = deps;
  const router = new Router();
  const refuseWhenFull = () => {
    if (coordinator.isBacklogFull()) {
      throw new AppError('BACKLOG_FULL', `the build backlog is full (${coordinator.queueInfo().backlog} waiting); retry later`, {
        status: 503,
        expose: true,
        headers: { 'Retry-After': String(RETRY_AFTER_SECONDS) },
      });
    }
  };
  /** The answer to a trigger: 422 without builds; else 202 with them, or 200 once all ended within `waitMs`. */
  const answer = async (ctx: Context, result: Awaited<ReturnType<Coordinator['submit']>>, waitMs: number | null): Promise<void> => {
    if (result.builds.length === 0) {
      ctx.status = 422;
      ctx.body = { error: { code: 'NO_DEFINITION', message: result.reason ?? 'no build definition matches' } };
      return;
    }
    const ids = result.builds.map((b) => b.id);
    const { ended, builds } = await waitForEnd({ store, events: deps.events }, ids, { timeoutMs: waitMs ?? 0, signal: toClosedSignal(ctx) });
    ctx.status = waitMs !== null && ended ? 200 : 202;
    ctx.body = { builds: builds.map((b) => toBuildView(b, publicUrl)) };
  };

  router.get('/api/queue', access.protected, (ctx) => {
    const info = coordinator.queueInfo();
    ctx.body = { ...info, waiting: info.waiting.map((w) => ({ ...w, build: store.get(w.buildId) })) };
  });

  router.post('/api/builds', access.token, async (ctx) => {
    const waitMs = parseWaitMs(ctx);
    refuseWhenFull();
    const input = await jsonBody(ctx.req, triggerSchema);
    const [owner = '', repo = ''] = input.repo.split('/');
    assertRepoName(owner, 'owner');
    assertRepoName(repo, 'repository name');
    const ref = parseRef(input.ref);
    // the clone URL and default branch of the repository's last webhook, else the configured
    // GitHub's (a GitHub Enterprise Server's own host: never github.com for it)
    const last = store.list({ repo: input.repo, limit: 1 })[0];
    const known = last === undefined ? null : store.getRequest(last.id);
    const cloneUrl = known?.cloneUrl ?? `https://${deps.gitHost}/${owner}/${repo}.git`;
    const sha = input.sha ?? (await deps.checkout.resolveRef({ cloneUrl: toCloneUrl(cloneUrl, deps.cloneUrlRewrites), ref: input.ref }));
    if (!isSha(sha)) throw new AppError('BAD_REQUEST', `cannot resolve ${input.ref}`, { status: 400 });
    const request: BuildRequest = {
      owner,
      repo,
      ref: `refs/${ref.kind === 'branch' ? 'heads' : 'tags'}/${ref.name}`,
      sha,
      cloneUrl,
      defaultBranch: known?.defaultBranch ?? null,
      deliveryId: null,
      ...(input.force === undefined ? {} : { force: input.force }),
      ...(input.params === undefined ? {} : { params: input.params }),
    };
    await answer(ctx, await coordinator.submit(request), waitMs);
  });

  router.post('/api/builds/:id/rebuild', access.token, async (ctx) => {
    const waitMs = parseWaitMs(ctx);
    refuseWhenFull();
    const { force } = await jsonBody(ctx.req, z.object({ force: z.boolean().optional() }).strict());
    const id = ctx.params['id'] ?? '';
    const request = store.get(id) === null ? null : store.getRequest(id);
    if (request === null) throw new AppError('NOT_FOUND', `no build ${id} to rebuild`, { status: 404 });
    const { tree: _tree, ...rest } = request;
    await answer(ctx, await coordinator.submit({ ...rest, deliveryId: null, force: force ?? false }), waitMs);
  });

  router.post('/api/builds/:id/cancel', access.token, async (ctx) => {
    const build = await coordinator.cancel(ctx.params['id'] ?? '');
    ctx.body = toBuildView(build, publicUrl);
  });

  return router;
}
