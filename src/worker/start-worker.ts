import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Build } from '../builds/build.js';
import type { BuildEnd, StopReason } from '../builds/build-lifecycle.js';
import { createLocalExecutor, type ExecutionPolicy } from '../builds/build-execution.js';
import { createCheckout, type Checkout } from '../builds/checkout.js';
import { createSecretMasker } from '../builds/secret-masker.js';
import { createArtifactUploader } from '../dispatch/artifact-upload.js';
import { createAttemptStreamWriter } from '../dispatch/attempt-stream.js';
import {
  buildJobSchema,
  CANCEL_CHANNEL,
  cancelMessageSchema,
  definedOnly,
  logStreamKey,
  reportSchema,
  workerQueueName,
  type BuildJob,
  type Heartbeat,
  type StreamEntry,
} from '../dispatch/protocol.js';
import { connectRedis } from '../dispatch/redis-client.js';
import { AppError, toMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { createDockerRunner } from '../runner/docker-runner.js';
import { detectDriver } from '../snapshots/detect-driver.js';
import { createCaches } from '../snapshots/caches.js';
import { createWorkspaces } from '../snapshots/workspaces.js';
import { createSerializeByKey } from '../serialize-by-key.js';
import type { WorkerConfig } from './worker-config.js';

/** A running build worker. */
export interface RunningWorker {
  id: string;
  /** Takes no more builds, lets the running ones finish (their results reported), then closes. */
  drain(): Promise<void>;
  /** Stops at once: running builds are stopped and report `cancelled`; then closes. */
  close(): Promise<void>;
}

/** What the server answers a heartbeat with: the BullMQ lock settings the worker must use. */
interface HeartbeatAnswer {
  lockDurationMs: number;
  stalledIntervalMs: number;
}

/**
 * Starts a build worker (see src/dispatch/protocol.ts): its own data directory (workspaces
 * on Btrfs, else copies; git mirrors; temp files) and Docker engine; it registers with the
 * server by its first heartbeat (which checks its token), takes builds from its BullMQ queue,
 * `capacity` at once, runs each with the same executor as the server's local mode, and
 * streams progress, log lines and the end to the attempt's Redis Stream. It never listens on
 * a port.
 * @throws AppError `UNAUTHORIZED` when the server refuses its token; `CONFIG_INVALID` for a bad Redis URL
 */
export async function startWorker(config: WorkerConfig, options: { log: Logger; version?: string; fetch?: typeof globalThis.fetch }): Promise<RunningWorker> {
  const { log } = options;
  const doFetch = options.fetch ?? globalThis.fetch;
  const version = options.version ?? '0.1.0';
  const running = new Map<string, { attempt: number; controller: AbortController }>();
  let draining = false;

  await mkdir(config.dataDir, { recursive: true });
  const driver = await detectDriver(join(config.dataDir, 'workspaces'), config.snapshotDriver);
  const workspaces = createWorkspaces({ root: join(config.dataDir, 'workspaces'), driver });
  // a worker keeps its own caches, as its own lineages: on its disk, by the same rules
  const caches = createCaches({ root: join(config.dataDir, 'caches'), driver });
  const leftovers = await caches.recover();
  if (leftovers > 0) log.warn({ snapshots: leftovers }, 'removed cache snapshots a killed worker left');
  const runner = createDockerRunner({
    socketPath: config.docker.socketPath,
    limits: config.docker,
    instance: createHash('sha256').update(config.dataDir).digest('hex').slice(0, 16),
    log: log.child({ component: 'runner' }),
    maxOutputBytesPerSecond: config.builds.maxOutputBytesPerSecond,
    // a worker that dies takes its builds with it: a retry elsewhere never runs beside them
    leaseToProcess: true,
  });
  const orphans = await runner.removeOrphans();
  if (orphans.length > 0) log.warn({ buildIds: orphans }, 'removed containers a killed worker left');
  const checkout = createCheckout({ mirrorsDir: join(config.dataDir, 'git'), timeoutMs: config.builds.gitTimeoutSeconds * 1000 });
  // builds of one env image on this engine wait for the first to make it
  const imageBuilds = createSerializeByKey();

  const beat = (): Heartbeat => ({
    id: config.id,
    host: hostname(),
    labels: config.labels,
    capacity: config.capacity,
    running: [...running.keys()],
    version,
    draining,
  });
  async function heartbeat(): Promise<HeartbeatAnswer> {
    const response = await doFetch(`${config.serverUrl.replace(/\/+$/, '')}/api/workers/heartbeat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${config.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(beat()),
    });
    const text = await response.text();
    if (response.status === 401 || response.status === 403) {
      throw new AppError('UNAUTHORIZED', `the server refused this worker's token (${response.status}): check dispatch.workers on the server`);
    }
    if (!response.ok) throw new AppError('INTERNAL', `heartbeat answered ${response.status}: ${text.slice(0, 200)}`);
    return JSON.parse(text) as HeartbeatAnswer;
  }

  const settings = await heartbeat();
  const wlog = log.child({ worker: config.id });
  const redis = connectRedis(config.redis.url, { caPath: config.redis.caPath, onError: (err) => wlog.warn({ err: err.message }, 'redis connection error') });
  const subscriber = redis.duplicate();
  subscriber.on('error', () => undefined);
  await subscriber.subscribe(CANCEL_CHANNEL);
  subscriber.on('message', (_channel, text) => {
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    const parsed = cancelMessageSchema.safeParse(message);
    if (!parsed.success) return;
    const run = running.get(parsed.data.buildId);
    if (run?.attempt === parsed.data.attempt) run.controller.abort(parsed.data.reason satisfies StopReason);
  });

  /** This host's caps over the server's: a build gets the least of both. */
  const capped = (policy: BuildJob['policy']): ExecutionPolicy => ({
    ...policy,
    maxResources: {
      memoryBytes: Math.min(policy.maxResources.memoryBytes, config.docker.memoryBytes),
      cpus: Math.min(policy.maxResources.cpus, config.docker.cpus),
      pidsLimit: Math.min(policy.maxResources.pidsLimit, config.docker.pidsLimit),
    },
  });

  /** The checkout with the build's git credential for its host (from the job, never in argv or a URL). */
  const withCredential = (gitAuth: BuildJob['gitAuth']): Checkout =>
    gitAuth === null ? checkout : { ...checkout, fetch: (input) => checkout.fetch({ ...input, token: { value: gitAuth.token, host: gitAuth.host } }) };

  async function processJob(job: Job): Promise<BuildEnd> {
    const parsed = buildJobSchema.safeParse(job.data);
    if (!parsed.success) {
      const problem = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
      wlog.error({ jobId: job.id, problem }, 'job refused: not a valid build job');
      throw new UnrecoverableError(`job refused by worker ${config.id}: ${problem.slice(0, 500)}`);
    }
    const data = parsed.data;
    const blog = wlog.child({ buildId: data.buildId, attempt: data.attempt });
    const stream = createAttemptStreamWriter(redis, logStreamKey(data.buildId, data.attempt));
    const controller = new AbortController();
    running.set(data.buildId, { attempt: data.attempt, controller });
    try {
      await stream.append({ t: 'taken', worker: config.id });
      const executor = createLocalExecutor({
        checkout: withCredential(data.gitAuth),
        workspaces,
        runner,
        artifacts: createArtifactUploader({
          serverUrl: config.serverUrl,
          token: config.token,
          buildId: data.buildId,
          attempt: data.attempt,
          name: data.definition.artifact,
          tmpDir: join(config.dataDir, 'tmp'),
          fetch: doFetch,
        }),
        log: blog,
        policy: capped(data.policy),
        // the server rewrote the clone URL already
        cloneUrlRewrites: [],
        mask: createSecretMasker([...Object.values(data.policy.secretEnv), data.gitAuth?.token]),
        now: () => new Date(),
        imageBuilds,
        caches,
      });
      const report = (changes: Partial<Build>) => {
        const fields = reportSchema.safeParse(changes);
        if (fields.success) stream.append({ t: 'report', changes: fields.data }).catch(() => undefined);
      };
      const end = await executor.execute(
        {
          build: data.build,
          definition: data.definition,
          request: {
            ...definedOnly(data.request),
            owner: data.request.owner,
            repo: data.request.repo,
            ref: data.request.ref,
            sha: data.request.sha,
            cloneUrl: data.request.cloneUrl,
            defaultBranch: data.request.defaultBranch,
            deliveryId: null,
          },
          log: stream,
          envImage: data.envImage,
        },
        controller.signal,
        report,
      );
      const wire: StreamEntry = {
        t: 'end',
        end: {
          state: end.state,
          description: end.description,
          ...(end.exitCode === undefined ? {} : { exitCode: end.exitCode }),
          ...(end.artifacts === undefined ? {} : { artifacts: end.artifacts }),
        },
      };
      await stream.append(wire);
      await stream.flush();
      blog.info({ state: end.state }, 'build ended');
      return end;
    } finally {
      running.delete(data.buildId);
    }
  }

  const bull = new Worker(workerQueueName(config.id), processJob, {
    connection: redis,
    concurrency: config.capacity,
    lockDuration: settings.lockDurationMs,
    stalledInterval: settings.stalledIntervalMs,
    maxStalledCount: 0,
    autorun: true,
  });
  bull.on('error', (err) => wlog.warn({ err: toMessage(err) }, 'build queue error'));

  let stopped = false;
  const timer = setInterval(() => {
    heartbeat().catch((err: unknown) => wlog.warn({ err: toMessage(err) }, 'heartbeat failed'));
  }, config.heartbeatSeconds * 1000);
  wlog.info({ labels: config.labels, capacity: config.capacity, snapshotDriver: driver.name, queue: workerQueueName(config.id) }, 'worker ready');

  async function shut(force: boolean): Promise<void> {
    if (stopped) return;
    stopped = true;
    draining = true;
    // the server hears at once that nothing more may come here
    await heartbeat().catch(() => undefined);
    if (force) for (const run of running.values()) run.controller.abort({ kind: 'cancelled', description: `worker ${config.id} stopped` } satisfies StopReason);
    await bull.close();
    clearInterval(timer);
    await heartbeat().catch(() => undefined);
    await subscriber.quit().catch(() => undefined);
    await redis.quit().catch(() => undefined);
    runner.close();
  }

  return { id: config.id, drain: () => shut(false), close: () => shut(true) };
}
