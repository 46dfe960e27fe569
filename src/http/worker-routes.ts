import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Router from '@koa/router';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import type { BullmqDispatch } from '../dispatch/bullmq-dispatch.js';
import { heartbeatSchema } from '../dispatch/protocol.js';
import type { WorkerRegistry } from '../dispatch/worker-registry.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { jsonBody } from './json-body.js';
import type { RouteGuards } from './route-access.js';

/**
 * The routes of build workers (bullmq dispatch):
 * - `POST /api/workers/heartbeat` (worker token): a {@link heartbeatSchema} body whose `id`
 *   must be the token's worker; answers the BullMQ lock settings it must use.
 * - `PUT /api/workers/builds/:id/artifacts/:name?attempt=N` (worker token): the artifact of
 *   the attempt that worker runs, with its sha256 in `X-Autobuilder-Sha256`. The server
 *   hashes the bytes itself as they arrive (at most `maxArtifactBytes`) and stores them only
 *   when both digests agree: 201 `{ digest, size }`; 422 on a mismatch, 409 when the worker
 *   runs no such attempt, 413 past the limit. A cut-off upload leaves nothing stored.
 * - `GET /api/workers` (protected): `{ mode, workers }`, every worker heard of, live or not,
 *   with its labels, capacity, running and assigned builds, last heartbeat and version.
 */
export function createWorkerRoutes(deps: {
  access: RouteGuards;
  /** null in local mode: `GET /api/workers` lists none, and no worker token exists */
  workers: {
    registry: WorkerRegistry;
    dispatch: Pick<BullmqDispatch, 'recordUpload' | 'attemptOf'>;
    settings: { lockDurationMs: number; stalledIntervalMs: number };
  } | null;
  artifacts: Pick<ArtifactStore, 'tempPath' | 'put'>;
  maxArtifactBytes: number;
  log: Logger;
}): Router {
  const { access, artifacts, log } = deps;
  const router = new Router();
  const bullmq = () => {
    if (deps.workers === null) throw new AppError('FORBIDDEN', 'builds run on this server (dispatch.mode local)', { status: 403 });
    return deps.workers;
  };
  const workerOf = (state: unknown): string => (state as { workerId: string }).workerId;

  router.post('/api/workers/heartbeat', access.worker, async (ctx) => {
    const { registry, settings } = bullmq();
    const beat = await jsonBody(ctx.req, heartbeatSchema);
    const id = workerOf(ctx.state);
    if (beat.id !== id) throw new AppError('FORBIDDEN', `this token is worker ${id}'s, not ${beat.id}'s`, { status: 403 });
    const known = registry.isLive(id);
    registry.heartbeat(beat);
    if (!known) log.info({ worker: id, host: beat.host, labels: beat.labels, capacity: beat.capacity, version: beat.version }, 'worker live');
    ctx.body = { lockDurationMs: settings.lockDurationMs, stalledIntervalMs: settings.stalledIntervalMs };
  });

  router.put('/api/workers/builds/:id/artifacts/:name', access.worker, async (ctx) => {
    const { dispatch } = bullmq();
    const worker = workerOf(ctx.state);
    const buildId = ctx.params['id'] ?? '';
    const name = ctx.params['name'] ?? '';
    const attempt = Number(ctx.query['attempt']);
    const claimed = ctx.get('X-Autobuilder-Sha256');
    if (!/^[0-9a-f]{64}$/.test(claimed)) throw new AppError('BAD_REQUEST', 'X-Autobuilder-Sha256 must be 64 lowercase hex', { status: 400 });
    const current = dispatch.attemptOf(buildId);
    if (current === null || current.attempt !== attempt || current.worker !== worker) {
      throw new AppError('CONFLICT', `worker ${worker} runs no attempt ${attempt} of build ${buildId}`, { status: 409 });
    }
    const declared = Number(ctx.get('Content-Length'));
    if (Number.isFinite(declared) && declared > deps.maxArtifactBytes) {
      throw new AppError('PAYLOAD_TOO_LARGE', `the artifact is larger than ${deps.maxArtifactBytes} bytes`, { status: 413 });
    }
    const temp = await artifacts.tempPath();
    const hash = createHash('sha256');
    let size = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        size += chunk.length;
        if (size > deps.maxArtifactBytes) {
          done(new AppError('PAYLOAD_TOO_LARGE', `the artifact is larger than ${deps.maxArtifactBytes} bytes`, { status: 413 }));
          return;
        }
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(ctx.req, counter, createWriteStream(temp));
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err instanceof AppError ? err : new AppError('BAD_REQUEST', 'the upload was cut off', { status: 400 });
    }
    const digest = hash.digest('hex');
    if (digest !== claimed) {
      await unlink(temp).catch(() => undefined);
      log.warn({ worker, buildId, claimed, digest }, 'artifact upload refused: digest mismatch');
      throw new AppError('BAD_REQUEST', `the server received sha256 ${digest}, not ${claimed}`, { status: 422 });
    }
    const stored = await artifacts.put(temp);
    if (!dispatch.recordUpload({ buildId, attempt, workerId: worker, name, digest: stored.digest, size: stored.size })) {
      throw new AppError('CONFLICT', `the attempt of build ${buildId} ended meanwhile`, { status: 409 });
    }
    ctx.status = 201;
    ctx.body = { digest: stored.digest, size: stored.size };
  });

  router.get('/api/workers', access.protected, (ctx) => {
    ctx.body = { mode: deps.workers === null ? 'local' : 'bullmq', workers: deps.workers?.registry.list() ?? [] };
  });

  return router;
}
