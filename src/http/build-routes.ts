import { createReadStream } from 'node:fs';
import Router from '@koa/router';
import { z } from 'zod';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import { isDigest } from '../artifacts/artifact-store.js';
import type { Build } from '../builds/build.js';
import { assertBuildId, type BuildLogs } from '../builds/build-log.js';
import { AppError } from '../errors.js';
import type { BuildStore } from '../store/build-store.js';
import { renderBuildPage } from './build-page.js';
import { toBuildView } from './build-view.js';

const listQuery = z
  .object({
    repo: z.string().max(201).optional(),
    ref: z.string().max(300).optional(),
    state: z.enum(['queued', 'running', 'success', 'failure', 'error', 'cancelled']).optional(),
    limit: z.coerce.number().int().min(1).max(500).optional(),
  })
  .strict();

/**
 * The read side of the HTTP contract (DESIGN §6): `GET /api/builds`, `/api/builds/:id`,
 * `/api/artifacts/:digest`
 * (ETag, immutable caching) and the HTML page `/builds/:id`.
 */
export function createBuildRoutes(deps: { store: BuildStore; logs: BuildLogs; artifacts: ArtifactStore; publicUrl: string }): Router {
  const { store, logs, artifacts, publicUrl } = deps;
  const router = new Router();
  const find = (id: string): Build => {
    const build = store.get(assertBuildId(id));
    if (build === null) throw new AppError('NOT_FOUND', `no build ${id}`, { status: 404 });
    return build;
  };

  router.get('/api/builds', (ctx) => {
    const parsed = listQuery.safeParse(ctx.query);
    if (!parsed.success) {
      throw new AppError('BAD_REQUEST', parsed.error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '), { status: 400 });
    }
    const q = parsed.data;
    const builds = store.list({
      ...(q.repo === undefined ? {} : { repo: q.repo }),
      ...(q.ref === undefined ? {} : { ref: q.ref }),
      ...(q.state === undefined ? {} : { state: q.state }),
      ...(q.limit === undefined ? {} : { limit: q.limit }),
    });
    ctx.body = { builds: builds.map((b) => toBuildView(b, publicUrl)) };
  });

  router.get('/api/builds/:id', (ctx) => {
    ctx.body = toBuildView(find(ctx.params['id'] ?? ''), publicUrl);
  });

  router.get('/api/artifacts/:digest', async (ctx) => {
    const digest = ctx.params['digest'] ?? '';
    if (!isDigest(digest)) throw new AppError('BAD_REQUEST', 'a digest is 64 lowercase hex characters (sha256)', { status: 400 });
    const stored = await artifacts.stat(digest);
    if (stored === null) throw new AppError('NOT_FOUND', `no artifact sha256:${digest}`, { status: 404 });
    ctx.set('ETag', `"${digest}"`);
    ctx.set('Cache-Control', 'public, max-age=31536000, immutable');
    if (ctx.get('If-None-Match') === `"${digest}"`) {
      ctx.status = 304;
      return;
    }
    ctx.type = 'application/octet-stream';
    ctx.length = stored.size;
    ctx.body = createReadStream(artifacts.pathOf(digest));
  });

  router.get('/builds/:id', async (ctx) => {
    const build = find(ctx.params['id'] ?? '');
    const log = ((await logs.read(build.id)) ?? Buffer.alloc(0)).toString('utf8');
    ctx.set('Content-Security-Policy', "default-src 'self'; style-src 'self' 'unsafe-inline'");
    ctx.type = 'text/html; charset=utf-8';
    ctx.body = renderBuildPage(build, log, (digest) => `/api/artifacts/${digest}`);
  });

  return router;
}
