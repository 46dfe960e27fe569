import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Server as SocketServer, Socket } from 'socket.io';
import type { Build } from '../builds/build.js';
import type { QueueInfo } from '../builds/scheduler.js';
import { BUILD_EVENTS, type BuildEventName, type BuildEvents } from '../builds/build-events.js';
import type { BuildLogs, LogAppend } from '../builds/build-log.js';
import type { ConfigRepository } from '../config-repo/config-repository.js';
import { toMessage } from '../errors.js';
import type { WorkerInfo, WorkerRegistry } from '../dispatch/worker-registry.js';
import type { PageAuth } from '../http/page-auth.js';
import { toBuildView } from '../http/build-view.js';
import type { Logger } from '../logger.js';
import type { BuildStore } from '../store/build-store.js';
import {
  watchRequestSchema,
  type LogTail,
  type MonitorBuildDelta,
  type MonitorClientEvents,
  type MonitorConfigState,
  type MonitorServerEvents,
  type MonitorSnapshot,
  type MonitorWorker,
  type WatchRequest,
} from './protocol.js';
import { toWaitingReasons } from './waiting-reasons.js';

/** The socket.io side of /monitor. */
export interface MonitorHub {
  /** Disconnects every client and stops listening to builds and logs; the HTTP server stays up. */
  close(): void;
}

/** A build's log as the monitor follows it: what was sent, and what waits for the next flush. */
interface Tail {
  /** byte offset after the last line sent */
  flushed: number;
  /** the last lines sent, at most `tailLines` */
  ring: string[];
  pending: { start: number; end: number; lines: string[]; at: number[]; skipped: number } | null;
  closed: boolean;
}

/** Characters of a log line sent to monitor clients (the tail of a build). */
const MAX_TAIL_LINE_CHARS = 2048;

const roomsOf = (repo: string) => ['all', `repo:${repo}`];

/** Where socket.io answers (engine.io matches this prefix; the browser client is served under it too). */
const SOCKET_PATH = '/socket.io';

/** A worker as the monitor shows it: what the registry knows, without the server's assignments. */
const toMonitorWorker = (w: WorkerInfo): MonitorWorker => ({
  id: w.id,
  host: w.host,
  labels: [...w.labels],
  capacity: w.capacity,
  running: [...w.running],
  version: w.version,
  live: w.live,
  draining: w.draining,
  lastHeartbeatAt: w.lastHeartbeatAt,
});

/**
 * Where the build definitions come from, for people to read: `directory <path>`,
 * `github <owner/name>#<branch>` or `git <url>#<branch>`, with any user name or password removed from the URL.
 */
export function toConfigSource(repository: { path: string; url?: string | undefined; repository?: string | undefined; branch: string }): string {
  if (repository.url === undefined)
    return repository.repository === undefined ? `directory ${repository.path}` : `github ${repository.repository}#${repository.branch}`;
  let url = repository.url;
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    url = parsed.href;
  } catch {
    // scp-like `user@host:path`: keep only what follows the user
    url = url.replace(/^[^@/]*@/, '');
  }
  return `git ${url}#${repository.branch}`;
}

/** `http://127.0.0.1:8462` also answers as `http://localhost:8462`, and the other way round. */
function withLoopbackAliases(origins: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const origin of origins) {
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      continue;
    }
    out.add(url.origin);
    for (const [a, b] of [
      ['127.0.0.1', 'localhost'],
      ['localhost', '127.0.0.1'],
    ] as const) {
      if (url.hostname === a) {
        url.hostname = b;
        out.add(url.origin);
      }
    }
  }
  return out;
}

/**
 * Attaches socket.io (path `/socket.io`, which also serves the browser client at
 * `/socket.io/socket.io.esm.min.js`) to `server` and runs the monitor: a snapshot on `watch`,
 * then build, log and queue deltas to the rooms `all` and `repo:<owner/name>`, and config and
 * workers deltas to every watcher. With `workers` (bullmq dispatch) every snapshot lists the
 * build workers, and their changes go out as `workers` deltas at most every
 * `workersIntervalMs` (default 500 ms), the last change always included.
 *
 * Log lines are on disk before they get here (see BuildLogs.onAppend); they are batched for
 * `flushMs` (default 15 ms), at most `maxBatchLines` per build per batch, each line cut to
 * 2,048 characters. A build's pending
 * lines are always sent before a change of that build, so a client sees them in order.
 *
 * Security: a handshake from a browser whose `Origin` is not one of `allowedOrigins` (and
 * their localhost / 127.0.0.1 aliases) is refused; with page credentials set, the handshake
 * needs them too (`auth.allowsSocket`). Attach it after the HTTP app's request listener:
 * socket.io takes over the listeners there and passes on what is not its own.
 *
 * socket.io (with engine.io and ws) is loaded and attached at the first request under
 * `/socket.io/` or the first upgrade, which wait for it: a server nobody monitors does not
 * hold it (several MiB). Builds and log tails are followed from the start all the same, so
 * the first snapshot is what it would have been.
 */
export function createMonitorHub(options: {
  server: HttpServer;
  events: BuildEvents;
  store: BuildStore;
  logs: BuildLogs;
  auth: PageAuth;
  publicUrl: string;
  allowedOrigins: readonly string[];
  concurrency: number;
  /** the scheduler's queue: why each waiting build waits is derived from it */
  queue: () => QueueInfo;
  configSource: string;
  /** the config repository: its state goes in every snapshot, and each reload to every watcher */
  configRepository: Pick<ConfigRepository, 'status' | 'onReload'>;
  log: Logger;
  observeLogLag?: (seconds: number) => void;
  /** the build workers (bullmq dispatch); null or left out when builds run on the server */
  workers?: Pick<WorkerRegistry, 'list' | 'onChange'> | null;
  workersIntervalMs?: number;
  flushMs?: number;
  tailLines?: number;
  maxBatchLines?: number;
}): MonitorHub {
  const { events, store, logs, auth, publicUrl, log } = options;
  const flushMs = options.flushMs ?? 15;
  const tailLines = options.tailLines ?? 20;
  const maxBatchLines = options.maxBatchLines ?? 500;
  const origins = withLoopbackAliases(options.allowedOrigins);

  /** socket.io once attached (see {@link attach}); until then no client can be connected, so nothing is emitted */
  let io: SocketServer<MonitorClientEvents, MonitorServerEvents> | null = null;
  let attaching: Promise<void> | null = null;

  let seq = 0;
  /** queued and running builds, from the store: it is written before any build event is emitted */
  const active = (): Build[] => [...store.list({ state: 'running', limit: 500 }), ...store.list({ state: 'queued', limit: 500 })];
  const tails = new Map<string, Tail>();
  /** repository of each build with a tail (known by the first flush: a log's first line comes just before its build is stored) */
  const repos = new Map<string, string>();
  const repoOf = (buildId: string): string | null => repos.get(buildId) ?? store.get(buildId)?.repo ?? null;
  let timer: NodeJS.Timeout | null = null;

  function flushTail(buildId: string, tail: Tail): void {
    const batch = tail.pending;
    tail.pending = null;
    if (batch !== null) {
      const repo = repoOf(buildId);
      tail.ring.push(...batch.lines);
      if (tail.ring.length > tailLines) tail.ring.splice(0, tail.ring.length - tailLines);
      tail.flushed = batch.end;
      if (repo !== null)
        io?.to(roomsOf(repo)).emit('log', { seq: ++seq, buildId, start: batch.start, end: batch.end, lines: batch.lines, skipped: batch.skipped });
      if (options.observeLogLag !== undefined) {
        const sent = performance.timeOrigin + performance.now();
        for (const at of batch.at) options.observeLogLag((sent - at) / 1000);
      }
    }
    if (tail.closed) tails.delete(buildId);
  }

  function flushAll(): void {
    timer = null;
    for (const [buildId, tail] of tails) flushTail(buildId, tail);
  }

  const onAppend = (append: LogAppend) => {
    let tail = tails.get(append.buildId);
    if (tail === undefined) {
      tail = { flushed: append.start, ring: [], pending: null, closed: false };
      tails.set(append.buildId, tail);
    }
    tail.pending ??= { start: append.start, end: append.start, lines: [], at: [], skipped: 0 };
    const batch = tail.pending;
    // a tail shows the start of a long line: a flood of 64 KiB lines stays small on every socket
    batch.lines.push(
      append.text.length > MAX_TAIL_LINE_CHARS ? `${append.text.slice(0, MAX_TAIL_LINE_CHARS)} … [cut: the build page shows the whole line]` : append.text,
    );
    batch.at.push(append.at);
    batch.end = append.end;
    if (batch.lines.length > maxBatchLines) {
      batch.lines.shift();
      batch.at.shift();
      batch.skipped += 1;
    }
    timer ??= setTimeout(flushAll, flushMs);
  };
  const onClose = (buildId: string) => {
    const tail = tails.get(buildId);
    if (tail === undefined) return;
    tail.closed = true;
    if (tail.pending === null) tails.delete(buildId);
  };

  const waiting = () => toWaitingReasons(options.queue());
  const configState = (): MonitorConfigState => {
    const { active: snapshot, lastErrors } = options.configRepository.status();
    const shown = 20;
    return {
      sha: snapshot?.sha ?? null,
      source: options.configSource,
      concurrency: options.concurrency,
      activatedAt: snapshot?.loadedAt ?? null,
      files: snapshot?.files.length ?? 0,
      errors:
        lastErrors === null
          ? null
          : { sha: lastErrors.sha, at: lastErrors.at, problems: lastErrors.problems.slice(0, shown), more: Math.max(0, lastErrors.problems.length - shown) },
    };
  };
  let closed = false;
  options.configRepository.onReload(() => {
    if (!closed) io?.to('watchers').emit('config', { seq: ++seq, config: configState() });
  });
  const view = (build: Build) => toBuildView(build, publicUrl);

  const workers = options.workers ?? null;
  const workersIntervalMs = options.workersIntervalMs ?? 500;
  const workersState = (): MonitorWorker[] | null => workers?.list().map(toMonitorWorker) ?? null;
  let workersSentAt = 0;
  /** the list last sent as JSON: the registry's expiry check says "changed" every few seconds, mostly when nothing did */
  let workersSent = '';
  let workersTimer: NodeJS.Timeout | null = null;
  const sendWorkers = () => {
    workersTimer = null;
    const list = workersState();
    if (list === null || closed) return;
    const json = JSON.stringify(list);
    if (json === workersSent) return;
    workersSent = json;
    workersSentAt = Date.now();
    io?.to('watchers').emit('workers', { seq: ++seq, at: new Date(workersSentAt).toISOString(), workers: list });
  };
  const stopWorkers =
    workers?.onChange(() => {
      if (workersTimer === null && !closed) workersTimer = setTimeout(sendWorkers, Math.max(0, workersSentAt + workersIntervalMs - Date.now()));
    }) ?? (() => undefined);

  const onBuild = (name: BuildEventName) => (build: Build) => {
    if (build.state === 'queued' || build.state === 'running') repos.set(build.id, build.repo);
    else repos.delete(build.id);
    const tail = tails.get(build.id);
    // lines written before this change go out before it
    if (tail !== undefined) flushTail(build.id, tail);
    const event = name.slice('build.'.length) as MonitorBuildDelta['event'];
    io?.to(roomsOf(build.repo)).emit('build', { seq: ++seq, event, build: view(build) });
    io?.to('watchers').emit('queue', { seq: ++seq, waiting: waiting() });
  };
  const listeners = BUILD_EVENTS.map((name) => [name, onBuild(name)] as const);
  for (const [name, listener] of listeners) events.on(name, listener);
  const stopAppend = logs.onAppend(onAppend);
  const stopClose = logs.onClose(onClose);

  /** The workers for a snapshot; the next change goes out to everyone even if it looks like the last one sent, which this client may not have. */
  function snapshotWorkers(): MonitorWorker[] | null {
    workersSent = '';
    return workersState();
  }

  function snapshot(watch: WatchRequest): MonitorSnapshot {
    const inScope = (b: Build) => watch.repo === undefined || b.repo === watch.repo;
    const all = active();
    const running = all.filter((b) => b.state === 'running' && inScope(b)).sort((a, b) => (a.startedAt ?? '').localeCompare(b.startedAt ?? ''));
    const queued = all.filter((b) => b.state === 'queued' && inScope(b)).sort((a, b) => a.queuedAt.localeCompare(b.queuedAt));
    const tailsOut: Record<string, LogTail> = {};
    for (const build of running) {
      const tail = tails.get(build.id);
      tailsOut[build.id] = tail === undefined ? { lines: [], end: 0 } : { lines: [...tail.ring], end: tail.flushed };
    }
    const recent = store.list({
      ...(watch.repo === undefined ? {} : { repo: watch.repo }),
      ...(watch.ref === undefined ? {} : { ref: watch.ref }),
      ...(watch.state === undefined ? {} : { state: watch.state }),
      limit: 50,
    });
    return {
      seq: ++seq,
      at: new Date().toISOString(),
      watch,
      running: running.map(view),
      queued: queued.map(view),
      waiting: waiting(),
      recent: recent.map(view),
      tails: tailsOut,
      config: configState(),
      workers: snapshotWorkers(),
    };
  }

  const onConnection = (socket: Socket<MonitorClientEvents, MonitorServerEvents>) => {
    // a client's request is what it sent, whatever the protocol type says: checked here
    socket.on('watch', (request: unknown) => {
      const parsed = watchRequestSchema.safeParse(request ?? {});
      if (!parsed.success) {
        socket.disconnect(true);
        return;
      }
      // synchronous from the snapshot to joining the rooms: no delta can fall in between
      for (const room of socket.rooms) if (room !== socket.id) void socket.leave(room);
      socket.emit('snapshot', snapshot(parsed.data));
      void socket.join(['watchers', parsed.data.repo === undefined ? 'all' : `repo:${parsed.data.repo}`]);
    });
  };

  /** Loads socket.io and attaches it to the server (once; not after close). */
  function attach(): Promise<void> {
    attaching ??= import('socket.io').then(({ Server }) => {
      if (closed) return;
      const created = new Server<MonitorClientEvents, MonitorServerEvents>(options.server, {
        path: SOCKET_PATH,
        serveClient: true,
        maxHttpBufferSize: 64 * 1024,
        allowRequest(req, callback) {
          const origin = req.headers.origin;
          // non-browser clients send no Origin; browsers always do on cross-origin handshakes
          if (origin === undefined || origins.has(origin)) return callback(null, true);
          log.warn({ origin, allowed: [...origins] }, 'monitor socket refused: origin not allowed (set publicUrl or pages.allowedOrigins)');
          callback('origin not allowed', false);
        },
      });
      created.use((socket, next) => {
        if (auth.allowsSocket(socket.request.headers, socket.handshake.auth)) next();
        else next(new Error('unauthorized: these pages need the configured credentials'));
      });
      created.on('connection', onConnection);
      io = created;
    });
    return attaching;
  }

  // Until socket.io is attached, this listener stands before the app's: a request for
  // socket.io waits for it and is then emitted again, to the listeners socket.io installs
  // (which pass on to this one, and so to the app's, what is not theirs).
  const { server } = options;
  const appListeners = server.listeners('request');
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (io === null && !closed && req.url?.startsWith(`${SOCKET_PATH}/`) === true) {
      attach().then(
        () => server.emit('request', req, res),
        (err: unknown) => {
          log.error({ err: toMessage(err) }, 'socket.io could not be loaded');
          res.statusCode = 500;
          res.end();
        },
      );
      return;
    }
    for (const listener of appListeners) Reflect.apply(listener, server, [req, res]);
  });
  // engine.io answers every upgrade (a path not its own is closed): the first one attaches it
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (io !== null) return;
    if (closed) {
      socket.destroy();
      return;
    }
    attach().then(
      () => (io === null ? socket.destroy() : server.emit('upgrade', req, socket, head)),
      () => socket.destroy(),
    );
  });

  return {
    close() {
      closed = true;
      if (timer !== null) clearTimeout(timer);
      if (workersTimer !== null) clearTimeout(workersTimer);
      stopWorkers();
      for (const [name, listener] of listeners) events.off(name, listener);
      stopAppend();
      stopClose();
      io?.disconnectSockets(true);
      io?.engine.close();
    },
  };
}
