import { createReadStream } from 'node:fs';
import Router from '@koa/router';
import type { Context } from 'koa';
import { create as contentDisposition } from 'content-disposition';
import { isDigest, type ArtifactStore } from '../artifacts/artifact-store.js';
import type { Build } from '../builds/build.js';
import { assertBuildId } from '../builds/build-log.js';
import { assertRepoName, parseRef } from '../builds/refs.js';
import { AppError } from '../errors.js';
import type { BuildStore } from '../store/build-store.js';
import type { RouteGuards } from './route-access.js';
import { sendByteRange } from './send-byte-range.js';

/**
 * Sends a stored artifact: `ETag` = the digest, immutable caching (content-addressed bytes
 * never change), `If-None-Match` → 304, one `Range` (RFC 9110 §14) → 206, an unsatisfiable
 * one → 416. `filename` adds `Content-Disposition: attachment`.
 */
async function sendArtifact(ctx: Context, artifacts: ArtifactStore, digest: string, filename?: string): Promise<void> {
  if (!isDigest(digest)) throw new AppError('BAD_REQUEST', 'a digest is 64 lowercase hex characters (sha256)', { status: 400 });
  const stored = await artifacts.stat(digest);
  if (stored === null) throw new AppError('NOT_FOUND', `no artifact sha256:${digest}`, { status: 404 });
  ctx.set('ETag', `"${digest}"`);
  ctx.set('Cache-Control', 'public, max-age=31536000, immutable');
  ctx.set('Accept-Ranges', 'bytes');
  ctx.set('X-Content-Type-Options', 'nosniff');
  if (filename !== undefined) ctx.set('Content-Disposition', contentDisposition(filename));
  if (ctx.get('If-None-Match') === `"${digest}"`) {
    ctx.status = 304;
    return;
  }
  ctx.type = 'application/octet-stream';
  // If-Range with another validator means the client's copy is stale: send everything
  const ifRange = ctx.get('If-Range');
  if ((ifRange === '' || ifRange === `"${digest}"`) && sendByteRange(ctx, { path: artifacts.pathOf(digest), size: stored.size })) return;
  ctx.length = stored.size;
  ctx.body = createReadStream(artifacts.pathOf(digest));
}

/**
 * Artifact downloads: by digest (`/api/artifacts/:digest`), by build and name
 * (`/api/builds/:id/artifacts/:name`), and the latest successful one of a ref
 * (`/api/repos/:owner/:repo/artifacts/:name?ref=refs/tags/v1.2`).
 */
export function createArtifactRoutes(deps: { access: RouteGuards; store: BuildStore; artifacts: ArtifactStore }): Router {
  const { access, store, artifacts } = deps;
  const router = new Router();
  const artifactOf = (build: Build, name: string) => build.artifacts.find((a) => a.name === name);

  // open: a sha256 digest is unguessable
  router.get('/api/artifacts/:digest', access.open, async (ctx) => {
    await sendArtifact(ctx, artifacts, ctx.params['digest'] ?? '');
  });

  router.get('/api/builds/:id/artifacts/:name', access.protected, async (ctx) => {
    const id = assertBuildId(ctx.params['id'] ?? '');
    const name = ctx.params['name'] ?? '';
    const build = store.get(id);
    const artifact = build === null ? undefined : artifactOf(build, name);
    if (artifact === undefined) throw new AppError('NOT_FOUND', `build ${id} has no artifact ${JSON.stringify(name)}`, { status: 404 });
    await sendArtifact(ctx, artifacts, artifact.digest, artifact.name);
  });

  router.get('/api/repos/:owner/:repo/artifacts/:name', access.protected, async (ctx) => {
    const owner = assertRepoName(ctx.params['owner'] ?? '', 'owner');
    const repo = assertRepoName(ctx.params['repo'] ?? '', 'repository name');
    const name = ctx.params['name'] ?? '';
    const ref = typeof ctx.query['ref'] === 'string' ? ctx.query['ref'] : '';
    if (ref === '') throw new AppError('BAD_REQUEST', 'the query parameter ref is required, e.g. ?ref=refs/tags/v1.2 or ?ref=refs/heads/main', { status: 400 });
    parseRef(ref);
    const latest = store
      .list({ repo: `${owner}/${repo}`, ref, state: 'success', limit: 500 })
      .map((build) => ({ build, artifact: artifactOf(build, name) }))
      .find((x) => x.artifact !== undefined);
    if (latest?.artifact === undefined)
      throw new AppError('NOT_FOUND', `no successful build of ${owner}/${repo} ${ref} has an artifact ${JSON.stringify(name)}`, { status: 404 });
    ctx.set('X-Autobuilder-Build', latest.build.id);
    await sendArtifact(ctx, artifacts, latest.artifact.digest, latest.artifact.name);
  });

  return router;
}
