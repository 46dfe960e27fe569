import { z } from 'zod';
import type { BuildEventName } from '../builds/build-events.js';
import type { BuildView } from '../http/build-view.js';

/**
 * The monitor's socket.io protocol. The client sends `watch` (on every connect, and when its
 * filters change); the server answers with one `snapshot`, then sends deltas in the order
 * things happened: `build`, `log`, `queue`, `config` and (bullmq dispatch) `workers`. Every server message carries `seq`, which only
 * grows (a client watching one repository sees gaps, never a step back).
 */
export const watchRequestSchema = z
  .object({
    /** `owner/name`: only this repository's builds and logs */
    repo: z.string().trim().min(1).max(201).optional(),
    /** the snapshot's history only: this ref (`refs/heads/main`) */
    ref: z.string().trim().min(1).max(300).optional(),
    /** the snapshot's history only: this state */
    state: z.enum(['queued', 'running', 'success', 'failure', 'error', 'cancelled']).optional(),
  })
  .strict();

/** What a client asks to watch. */
export type WatchRequest = z.infer<typeof watchRequestSchema>;

/** The last lines of a build's log as the monitor shows them, and the byte offset after them. */
export interface LogTail {
  lines: string[];
  end: number;
}

/** Everything a monitor shows, at one moment (`seq`). */
export interface MonitorSnapshot {
  seq: number;
  /** server time, ISO 8601 */
  at: string;
  watch: WatchRequest;
  /** oldest started first */
  running: BuildView[];
  /** first queued first */
  queued: BuildView[];
  /** why each queued build waits, by build id */
  waiting: Record<string, string>;
  /** newest first, filtered by the watch request */
  recent: BuildView[];
  /** log tails of the running builds, by build id */
  tails: Record<string, LogTail>;
  config: MonitorConfigState;
  /** the build workers (bullmq dispatch), by id; null when builds run on the server (local mode) */
  workers: MonitorWorker[] | null;
}

/** A build worker as the monitor shows it, from its heartbeats (see WorkerInfo in src/dispatch/worker-registry.ts). */
export interface MonitorWorker {
  id: string;
  /** the host name it reports */
  host: string;
  labels: string[];
  /** builds it runs at once */
  capacity: number;
  /** ids of the builds it runs now, as its last heartbeat said */
  running: string[];
  /** its autobuilder version */
  version: string;
  /** true while its heartbeats come within dispatch.heartbeatTimeoutSeconds */
  live: boolean;
  /** true once it drains (SIGTERM): it finishes what it runs and takes no more */
  draining: boolean;
  /** when its last heartbeat came, ISO 8601 (server time) */
  lastHeartbeatAt: string;
}

/**
 * The workers changed (a heartbeat, a build given to one or released, one no longer live):
 * all of them, at most twice a second. `at` is the server's time, so a page can tell the age
 * of a heartbeat whatever its own clock says.
 */
export interface MonitorWorkersDelta {
  seq: number;
  /** server time, ISO 8601 */
  at: string;
  workers: MonitorWorker[];
}

/** The config repository as the monitor shows it. */
export interface MonitorConfigState {
  /** commit of the active definitions; null in plain-directory mode or before a valid revision */
  sha: string | null;
  /** where the definitions come from, e.g. `git https://…#main` or `directory ./projects` */
  source: string;
  /** builds that run at once */
  concurrency: number;
  /** when the active definitions were activated (ISO 8601); null before a valid revision */
  activatedAt: string | null;
  /** definition files active */
  files: number;
  /** the last refused revision since the active one, with its first problems; null when none */
  errors: { sha: string | null; at: string; problems: { file: string; line: number | null; key: string; message: string }[]; more: number } | null;
}

/** The config repository changed: a revision was activated or refused. */
export interface MonitorConfigDelta {
  seq: number;
  config: MonitorConfigState;
}

/** A build changed: `event` is the build event's name without `build.` (`queued`, `started`, `updated`, `finished`). */
export interface MonitorBuildDelta {
  seq: number;
  event: BuildEventName extends `build.${infer E}` ? E : never;
  build: BuildView;
}

/**
 * Lines appended to a build's log. `start` and `end` are byte offsets in the log file; a
 * batch follows the previous one of its build (`start` = previous `end`). When more lines
 * arrived in one batch than the monitor shows, the oldest are left out and counted in `skipped`.
 */
export interface MonitorLogDelta {
  seq: number;
  buildId: string;
  start: number;
  end: number;
  lines: string[];
  skipped: number;
}

/** Why each queued build waits now, by build id (every queued build, whatever the scope). */
export interface MonitorQueueDelta {
  seq: number;
  waiting: Record<string, string>;
}

/** Messages the server sends, by event name. */
export interface MonitorServerEvents {
  snapshot: (snapshot: MonitorSnapshot) => void;
  build: (delta: MonitorBuildDelta) => void;
  log: (delta: MonitorLogDelta) => void;
  queue: (delta: MonitorQueueDelta) => void;
  config: (delta: MonitorConfigDelta) => void;
  workers: (delta: MonitorWorkersDelta) => void;
}

/** Messages a client sends, by event name. */
export interface MonitorClientEvents {
  watch: (request: WatchRequest) => void;
}
