import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Build, BuildState } from '../builds/build.js';
import type { BuildEvents } from '../builds/build-events.js';
import type { WorkerRegistry } from '../dispatch/worker-registry.js';
import { AppError } from '../errors.js';
import type { BuildStore } from '../store/build-store.js';
import { createWorkerMetrics, type WorkerMetrics } from './worker-metrics.js';

/** The server's Prometheus metrics, fed by build events and by the parts that time things. */
export interface Metrics {
  /** the registry `GET /metrics` exposes (one per server, never prom-client's global one) */
  registry: Registry;
  /** Records how long a log line took from the file to the monitor's sockets, in seconds. */
  observeLogLag(seconds: number): void;
  /** Wraps the `fetch` every GitHub API call of the server goes through (statuses, check runs, the App's tokens) so failed requests are counted. */
  instrumentFetch(fetch: typeof globalThis.fetch): typeof globalThis.fetch;
  /**
   * Adds the build-worker metrics of a bullmq-mode server (see {@link createWorkerMetrics}),
   * read from `workers`; without a call (local mode) there are none. Call it once, before
   * builds run (the registry is made after the metrics, which the GitHub side needs first).
   * @throws AppError `INTERNAL` when called twice
   */
  followWorkers(workers: Pick<WorkerRegistry, 'list'>): void;
  /** Stops listening to build events. */
  close(): void;
}

const seconds = (from: string | null, to: string | null): number | null => {
  if (from === null || to === null) return null;
  const ms = Date.parse(to) - Date.parse(from);
  return Number.isFinite(ms) ? Math.max(0, ms / 1000) : null;
};

/**
 * Creates the metrics (names prefixed `autobuilder_`): builds by state, queue depth and the age
 * of the oldest queued build, histograms of webhook → queued, queued → started, build
 * duration and workspace preparation (the snapshot), cache hits and misses, log broadcast lag,
 * failed GitHub requests, Node's process metrics, and those of build workers once
 * {@link Metrics.followWorkers} is called. Everything is derived from `events` and
 * `store`; `now` is injectable for tests.
 */
export function createMetrics(options: { events: BuildEvents; store: BuildStore; now?: () => number }): Metrics {
  const { events, store } = options;
  const now = options.now ?? Date.now;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'autobuilder_' });

  // counts and the oldest queued build come from the store (the truth, written before any
  // build event), each from an index: a scrape reads the queued and running builds' index
  // entries, never the whole history
  /** when each running build started, until its workspace is ready */
  const preparing = new Map<string, string>();
  let workerMetrics: WorkerMetrics | null = null;

  const finished = new Counter({
    name: 'autobuilder_builds_total',
    help: 'Builds that ended, by final state (cached and coalesced builds included).',
    labelNames: ['state'] as const,
    registers: [registry],
  });
  new Gauge({
    name: 'autobuilder_builds',
    help: 'Builds queued or running now, by state.',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const state of ['queued', 'running'] as const) this.set({ state }, store.count(state));
    },
  });
  new Gauge({
    name: 'autobuilder_queue_depth',
    help: 'Builds waiting to run (queued, including those waiting for an identical build).',
    registers: [registry],
    collect() {
      this.set(store.count('queued'));
    },
  });
  new Gauge({
    name: 'autobuilder_queue_oldest_age_seconds',
    help: 'How long the oldest queued build has waited; 0 when nothing waits.',
    registers: [registry],
    collect() {
      const [oldest] = store.list({ state: 'queued', order: 'oldest-first', limit: 1 });
      this.set(oldest === undefined ? 0 : Math.max(0, (now() - Date.parse(oldest.queuedAt)) / 1000));
    },
  });
  const webhookToQueued = new Histogram({
    name: 'autobuilder_webhook_to_queued_seconds',
    help: 'From the webhook delivery being received to its build being queued.',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const queuedToStarted = new Histogram({
    name: 'autobuilder_queued_to_started_seconds',
    help: 'From a build being queued to it starting to run.',
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'autobuilder_build_duration_seconds',
    help: 'From a build starting to it ending, by final state (builds that ran only).',
    labelNames: ['state'] as const,
    buckets: [1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200],
    registers: [registry],
  });
  const workspace = new Histogram({
    name: 'autobuilder_workspace_prepare_seconds',
    help: 'From a build starting to its workspace being ready: the snapshot of the lineage head (or a fresh subvolume) and its clean-up.',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const cache = new Counter({
    name: 'autobuilder_cache_requests_total',
    help: 'Builds by how the build cache answered: hit (an earlier result), coalesced (joined an identical build in flight), miss (ran).',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  for (const result of ['hit', 'miss', 'coalesced'] as const) cache.inc({ result }, 0);
  const logLag = new Histogram({
    name: 'autobuilder_log_broadcast_lag_seconds',
    help: 'From a log line being on disk to it being sent to the monitor sockets.',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });
  const githubFailures = new Counter({
    name: 'autobuilder_github_request_failures_total',
    help: "Failed requests to GitHub's REST API: commit statuses, check runs, App installations and tokens (an error answer or no answer; each retry counts).",
    registers: [registry],
  });
  githubFailures.inc(0);

  const onQueued = (build: Build) => {
    const delivery = build.deliveryId === null ? null : store.getDelivery(build.deliveryId);
    const s = seconds(delivery?.receivedAt ?? null, build.queuedAt);
    if (s !== null) webhookToQueued.observe(s);
  };
  const onStarted = (build: Build) => {
    const s = seconds(build.queuedAt, build.startedAt);
    if (s !== null) queuedToStarted.observe(s);
    if (build.startedAt !== null) preparing.set(build.id, build.startedAt);
    workerMetrics?.onStarted(build);
  };
  const onUpdated = (build: Build) => {
    const started = preparing.get(build.id);
    // the coordinator's first change after `started` is the workspace being ready
    if (build.state === 'running' && started !== undefined) {
      preparing.delete(build.id);
      const s = seconds(started, new Date(now()).toISOString());
      if (s !== null) workspace.observe(s);
    }
  };
  const onFinished = (build: Build) => {
    preparing.delete(build.id);
    finished.inc({ state: build.state satisfies BuildState });
    const ran = seconds(build.startedAt, build.finishedAt);
    if (ran !== null) duration.observe({ state: build.state }, ran);
    // a build that ended before the cache was asked (a bad image, a failed fetch) is none of them
    if (build.cached) cache.inc({ result: 'hit' });
    else if (build.coalesced) cache.inc({ result: 'coalesced' });
    else if (build.cacheMiss !== null) cache.inc({ result: 'miss' });
    workerMetrics?.onFinished(build);
  };
  events.on('build.queued', onQueued);
  events.on('build.started', onStarted);
  events.on('build.updated', onUpdated);
  events.on('build.finished', onFinished);

  return {
    registry,
    observeLogLag(lag) {
      logLag.observe(lag);
    },
    instrumentFetch(fetch) {
      return async (input, init) => {
        try {
          const response = await fetch(input, init);
          if (response.status >= 400) githubFailures.inc();
          return response;
        } catch (err) {
          githubFailures.inc();
          throw err;
        }
      };
    },
    followWorkers(workers) {
      if (workerMetrics !== null) throw new AppError('INTERNAL', 'the worker metrics are registered already');
      workerMetrics = createWorkerMetrics({ registry, workers, now });
    },
    close() {
      events.off('build.queued', onQueued);
      events.off('build.started', onStarted);
      events.off('build.updated', onUpdated);
      events.off('build.finished', onFinished);
    },
  };
}
