import { createReadStream } from 'node:fs';
import { PassThrough, Readable } from 'node:stream';
import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { Build } from '../builds/build.js';
import { BUILD_EVENTS, type BuildEvents } from '../builds/build-events.js';
import type { BuildLogs } from '../builds/build-log.js';
import { MAX_LINE_BYTES } from '../builds/read-build-log-lines.js';
import { createLineSplitter, toShownLine, type SplitLine } from '../builds/line-splitter.js';
import { AppError } from '../errors.js';
import type { BuildStore } from '../store/build-store.js';
import { toBuildView } from './build-view.js';
import { findBuild } from './find-build.js';
import { toServerSentEvent } from './server-sent-events.js';
import type { RouteGuards } from './route-access.js';
import { sendByteRange } from './send-byte-range.js';

const linesQuery = z.union([
  z.object({ tail: z.coerce.number().int().min(0).max(10_000) }).strict(),
  z
    .object({
      start: z.coerce.number().int().min(1),
      count: z.coerce.number().int().min(0).max(10_000).default(1000),
    })
    .strict(),
]);

const OFFSET = /^\d{1,15}$/;

/** Reads a resume offset: the `Last-Event-ID` header wins over `?offset=`; anything else is 0. */
function resumeOffset(ctx: Context): number {
  const header = ctx.get('Last-Event-ID').trim();
  if (OFFSET.test(header)) return Number(header);
  const query = ctx.query['offset'];
  if (typeof query === 'string' && OFFSET.test(query)) return Number(query);
  if (header !== '' || query !== undefined) throw new AppError('BAD_REQUEST', 'a resume offset is a byte offset: digits only', { status: 400 });
  return 0;
}

/**
 * The build log over HTTP:
 * - `GET /api/builds/:id/log`: text/plain, one `Range` of bytes (206/416); `?follow=1` streams
 *   until the build ends; `Accept: text/event-stream` gives server-sent events: `build` (the
 *   build record, at the start and on every change), `log` (`data` = a JSON array of whole
 *   lines, `id` = the byte offset after them), and a last `end` (`{ state, offset }`). A
 *   reconnecting client sends `Last-Event-ID` (or `?offset=`) and gets exactly the lines after
 *   it: every line is on disk before anyone hears of it, so the file is the one truth.
 * - `GET /api/builds/:id/log/lines?start=N&count=M` or `?tail=M`: whole lines by line number
 *   as JSON (see `LogLines`), for windows over logs of any size.
 */
export function createLogRoutes(deps: {
  access: RouteGuards;
  store: BuildStore;
  logs: BuildLogs;
  events: BuildEvents;
  publicUrl: string;
  heartbeatMs?: number;
}): Router {
  const { store, logs, events, publicUrl } = deps;
  const heartbeatMs = deps.heartbeatMs ?? 15_000;
  const router = new Router();

  /** Aborts when the client goes away, so followers stop waiting for lines nobody reads. */
  const closedSignal = (ctx: Context): AbortSignal => {
    const controller = new AbortController();
    ctx.res.once('close', () => controller.abort());
    return controller.signal;
  };

  function streamEvents(ctx: Context, build: Build): void {
    const from = resumeOffset(ctx);
    const signal = closedSignal(ctx);
    const out = new PassThrough();
    const write = (text: string): boolean => (out.writableEnded ? true : out.write(text));
    const sendBuild = (b: Build) => write(toServerSentEvent({ event: 'build', data: toBuildView(b, publicUrl) }));
    const onEvent = (b: Build) => {
      if (b.id === build.id) sendBuild(b);
    };
    for (const name of BUILD_EVENTS) events.on(name, onEvent);
    const heartbeat = setInterval(() => write(': keep-alive\n\n'), heartbeatMs).unref();
    const stop = () => {
      clearInterval(heartbeat);
      for (const name of BUILD_EVENTS) events.off(name, onEvent);
    };
    signal.addEventListener('abort', stop, { once: true });

    ctx.status = 200;
    ctx.type = 'text/event-stream';
    ctx.set('Cache-Control', 'no-cache, no-transform');
    ctx.set('X-Accel-Buffering', 'no');
    ctx.req.socket.setNoDelay(true);
    ctx.body = out;

    void (async () => {
      write(`retry: 1000\n\n`);
      sendBuild(build);
      const size = (await logs.stat(build.id))?.size ?? 0;
      let end = Math.min(from, size);
      // lines past 64 KiB are cut for the event (the raw log has them whole): each byte is read
      // once and a client holds at most one cut line, however long the log's lines are
      const splitter = createLineSplitter({ maxLineBytes: MAX_LINE_BYTES, overflow: 'truncate', offset: end });
      const send = (lines: readonly SplitLine[]): Promise<void> | undefined => {
        const last = lines.at(-1);
        if (last === undefined) return undefined;
        end = last.end;
        if (write(toServerSentEvent({ id: String(last.end), event: 'log', data: lines.map(toShownLine) }))) return undefined;
        return new Promise((resolve) => {
          // whichever comes first removes the other: a long stream waits for drain many times
          const done = () => {
            out.off('drain', done);
            signal.removeEventListener('abort', done);
            resolve();
          };
          out.once('drain', done);
          signal.addEventListener('abort', done, { once: true });
        });
      };
      for await (const chunk of logs.follow(build.id, end, signal)) await send(splitter.push(chunk));
      if (signal.aborted) return;
      const last = splitter.flush();
      await send(last === null ? [] : [last]);
      const now = store.get(build.id) ?? build;
      sendBuild(now);
      write(toServerSentEvent({ event: 'end', data: { state: now.state, offset: end } }));
      stop();
      out.end();
    })().catch((err: unknown) => {
      stop();
      out.destroy(err instanceof Error ? err : new Error(String(err)));
    });
  }

  router.get('/api/builds/:id/log', deps.access.protected, async (ctx) => {
    const build = findBuild(store, ctx.params['id'] ?? '');
    ctx.set('X-Content-Type-Options', 'nosniff');
    if (ctx.get('Accept').includes('text/event-stream')) {
      streamEvents(ctx, build);
      return;
    }
    ctx.type = 'text/plain; charset=utf-8';
    if (ctx.query['follow'] === '1' || ctx.query['follow'] === 'true') {
      ctx.set('Cache-Control', 'no-cache');
      ctx.body = Readable.from(logs.follow(build.id, 0, closedSignal(ctx)));
      return;
    }
    const stat = await logs.stat(build.id);
    const size = stat?.size ?? 0;
    ctx.set('Accept-Ranges', 'bytes');
    ctx.set('Cache-Control', 'no-cache');
    if (stat !== null && sendByteRange(ctx, { path: logs.pathOf(build.id), size })) return;
    if (stat === null || size === 0) {
      ctx.body = '';
      return;
    }
    ctx.length = size;
    ctx.body = createReadStream(logs.pathOf(build.id), { start: 0, end: size - 1 });
  });

  router.get('/api/builds/:id/log/lines', deps.access.protected, async (ctx) => {
    const build = findBuild(store, ctx.params['id'] ?? '');
    const parsed = linesQuery.safeParse(ctx.query);
    if (!parsed.success) throw new AppError('BAD_REQUEST', 'give ?tail=N, or ?start=N with an optional &count=M (each at most 10000)', { status: 400 });
    const lines = await logs.readLines(build.id, parsed.data);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = lines ?? { start: 1, lines: [], total: 0, startOffset: 0, endOffset: 0, size: 0, complete: true };
  });

  return router;
}
