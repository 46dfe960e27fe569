import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import Router from '@koa/router';
import { AppError } from '../errors.js';
import type { RouteGuards } from './route-access.js';

/** Where the pages' scripts and styles live: plain files, served as they are (no build step). */
export const ASSETS_DIR = join(import.meta.dirname, '..', 'monitor', 'static');

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

/**
 * `GET /assets/:name`: the files of `dir` (default {@link ASSETS_DIR}) read once at start;
 * only `.js`, `.css` and `.svg` files with plain names are served (never a path), with a
 * content `ETag` so browsers revalidate cheaply.
 */
export function createAssetRoutes(options: { access: RouteGuards; dir?: string }): Router {
  const dir = options.dir ?? ASSETS_DIR;
  const assets = new Map<string, Asset>();
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (type === undefined || !/^[a-z0-9-]+\.[a-z]+$/.test(name)) continue;
    const body = readFileSync(join(dir, name));
    assets.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
  }
  const router = new Router();
  router.get('/assets/:name', options.access.open, (ctx) => {
    const asset = assets.get(ctx.params['name'] ?? '');
    if (asset === undefined) throw new AppError('NOT_FOUND', `no asset ${ctx.params['name'] ?? ''}`, { status: 404 });
    ctx.set('ETag', asset.etag);
    ctx.set('Cache-Control', 'no-cache');
    ctx.set('X-Content-Type-Options', 'nosniff');
    if (ctx.get('If-None-Match') === asset.etag) {
      ctx.status = 304;
      return;
    }
    ctx.type = asset.type;
    ctx.body = asset.body;
  });
  return router;
}
