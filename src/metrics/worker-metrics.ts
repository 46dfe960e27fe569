import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Build } from '../builds/build.js';
import type { WorkerInfo, WorkerRegistry } from '../dispatch/worker-registry.js';

/** The build-worker metrics of a bullmq-mode server, fed by the build events {@link createMetrics} hears. */
export interface WorkerMetrics {
  /** Observes the dispatch latency of a build that started on a worker (once per build). */
  onStarted(build: Build): void;
  /** Counts a build that ended after a worker took it. */
  onFinished(build: Build): void;
}

/**
 * Registers the worker metrics on `registry`: per worker (label `worker`, every worker heard of
 * since the start) `autobuilder_worker_live` (1 or 0), `autobuilder_worker_capacity`,
 * `autobuilder_worker_running_builds` (what its last heartbeat said it runs) and
 * `autobuilder_worker_last_heartbeat_age_seconds`, all read from `workers` at scrape time;
 * the counter `autobuilder_worker_builds_total{worker,state}` and the histogram
 * `autobuilder_dispatch_latency_seconds` (queued → running, builds that ran on a worker).
 * `now` is milliseconds since the epoch.
 */
export function createWorkerMetrics(options: { registry: Registry; workers: Pick<WorkerRegistry, 'list'>; now: () => number }): WorkerMetrics {
  const { registry, workers, now } = options;
  /** A gauge per worker whose value is read from the registry's view of it at each scrape. */
  const perWorker = (name: string, help: string, read: (worker: WorkerInfo) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['worker'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const worker of workers.list()) this.set({ worker: worker.id }, read(worker));
      },
    });
  perWorker('autobuilder_worker_live', 'Whether the worker is live: 1 while its heartbeats come within dispatch.heartbeatTimeoutSeconds, else 0.', (w) =>
    w.live ? 1 : 0,
  );
  perWorker('autobuilder_worker_capacity', 'Builds the worker runs at once (its configured capacity).', (w) => w.capacity);
  perWorker('autobuilder_worker_running_builds', 'Builds the worker runs now, as its last heartbeat said.', (w) => w.running.length);
  perWorker('autobuilder_worker_last_heartbeat_age_seconds', 'Seconds since the worker last sent a heartbeat.', (w) =>
    Math.max(0, (now() - Date.parse(w.lastHeartbeatAt)) / 1000),
  );
  const builds = new Counter({
    name: 'autobuilder_worker_builds_total',
    help: 'Builds that ended after a worker took them, by worker and final state.',
    labelNames: ['worker', 'state'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'autobuilder_dispatch_latency_seconds',
    help: 'From a build being queued to it running on a worker (the worker taking it and starting).',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
    registers: [registry],
  });
  /** builds already observed: a retried build reports `running` again on its next worker */
  const started = new Set<string>();

  return {
    onStarted(build) {
      if (build.worker === null || build.startedAt === null || started.has(build.id)) return;
      const ms = Date.parse(build.startedAt) - Date.parse(build.queuedAt);
      if (!Number.isFinite(ms)) return;
      started.add(build.id);
      // the worker's clock sets startedAt: a small skew must not make it negative
      latency.observe(Math.max(0, ms / 1000));
    },
    onFinished(build) {
      started.delete(build.id);
      if (build.worker !== null) builds.inc({ worker: build.worker, state: build.state });
    },
  };
}
