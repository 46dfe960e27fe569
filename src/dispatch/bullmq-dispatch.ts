import { Queue, Worker } from 'bullmq';
import type { Build } from '../builds/build.js';
import type { BuildEnd, StopReason } from '../builds/build-lifecycle.js';
import { toStopEnd, type BuildExecutor, type ExecutionJob, type ExecutionPolicy } from '../builds/build-execution.js';
import { toCloneUrl, toRepositoryOfUrl, type CloneUrlRewrite, type GitCredentials } from '../builds/checkout.js';
import { toMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { readAttemptStream } from './attempt-stream.js';
import {
  CANCEL_CHANNEL,
  definedOnly,
  DISPATCH_PROTOCOL_VERSION,
  jobIdOf,
  logStreamKey,
  workerQueueName,
  type BuildJob,
  type CancelMessage,
} from './protocol.js';
import { createPlacement } from './placement.js';
import { connectRedis } from './redis-client.js';
import type { WorkerRegistry } from './worker-registry.js';

/** Settings of bullmq dispatch (server config `dispatch`). */
export interface DispatchSettings {
  redisUrl: string;
  /** CA file that signs a `rediss://` server's certificate, when not a public CA */
  redisCaPath?: string | undefined;
  /** ms a worker's job lock lasts without renewal (BullMQ `lockDuration`) */
  lockDurationMs: number;
  /** ms between checks for jobs whose lock expired (BullMQ `stalledInterval`) */
  stalledIntervalMs: number;
  /** ms a build waits for the worker that holds its workspace lineage before it goes to another */
  affinityWaitMs: number;
}

/** What the bullmq dispatcher adds to a {@link BuildExecutor}: what the worker routes and /api/workers need. */
export interface BullmqDispatch extends BuildExecutor {
  /**
   * Records an artifact the server stored for the attempt a worker runs; false when that
   * worker runs no such attempt (a late or foreign upload: the caller drops the file).
   */
  recordUpload(input: { buildId: string; attempt: number; workerId: string; name: string; digest: string; size: number }): boolean;
  /** The attempt of `buildId` being dispatched or run, or null. */
  attemptOf(buildId: string): { attempt: number; worker: string | null } | null;
  close(): Promise<void>;
}

/** One attempt as the server follows it. */
interface Attempt {
  attempt: number;
  worker: string | null;
  taken: boolean;
  uploads: Map<string, { digest: string; size: number }>;
}

/** ms between looks at an attempt's BullMQ job while its stream is quiet. */
const JOB_CHECK_MS = 2000;

type AttemptResult = { kind: 'end'; end: BuildEnd } | { kind: 'lost'; worker: string } | { kind: 'replace' };

/**
 * The git credential a worker's job for a build cloning `cloneUrl` carries: with
 * `gitCredentials`, the token of the repository the URL names when it is an https URL of their
 * host (asked for now: a GitHub App's installation token); else the one `gitToken` for an https
 * URL of its host; null for any other URL, and when there is no token (the worker then fetches
 * without one; a public repository still works; the reason is logged).
 */
export async function toJobGitAuth(
  cloneUrl: string,
  deps: { gitToken?: { value: string; host: string } | undefined; gitCredentials?: GitCredentials | undefined; log: Logger },
): Promise<{ host: string; token: string } | null> {
  const credentials = deps.gitCredentials;
  if (credentials === undefined) {
    const token = deps.gitToken;
    if (token === undefined || !cloneUrl.startsWith('https://')) return null;
    try {
      return new URL(cloneUrl).host === token.host ? { host: token.host, token: token.value } : null;
    } catch {
      return null;
    }
  }
  const repository = toRepositoryOfUrl(cloneUrl, credentials.host);
  if (repository === null) return null;
  try {
    const token = await credentials.tokenFor(repository);
    return token === undefined ? null : { host: credentials.host, token };
  } catch (err) {
    deps.log.warn({ repository, err: toMessage(err) }, 'no git token for a worker job');
    return null;
  }
}

/**
 * Creates the dispatcher that runs builds on workers (see protocol.ts): it places each build
 * on a live worker with the labels its definition's `runs-on` asks for (the worker that holds
 * its workspace lineage first, for up to `affinityWaitMs`), queues it there, follows its
 * stream into the build's log, and ends it with the worker's result, whose artifacts must be
 * the ones the server received. A worker lost mid-build (its job lock expired) ends the
 * build `error` "worker <id> lost", or, with the definition's `retry: 1`, runs it once more
 * on another worker. A cancel reaches the worker through Redis pub/sub.
 */
export function createBullmqDispatch(deps: {
  settings: DispatchSettings;
  registry: WorkerRegistry;
  /** the worker that ran the last green build of the build's lineage, if any */
  lineageWorker: (job: ExecutionJob) => string | null;
  policy: ExecutionPolicy;
  cloneUrlRewrites: readonly CloneUrlRewrite[];
  /** the GitHub token and its git host: a build cloning from that host gets it as git's credential */
  gitToken?: { value: string; host: string } | undefined;
  /**
   * per-repository tokens, over `gitToken`: a build cloning from the host gets its
   * repository's token, asked for when the job is queued (a GitHub App's installation token:
   * the job carries one that stays valid a while, see worker-dispatch.ts)
   */
  gitCredentials?: GitCredentials | undefined;
  log: Logger;
  now?: () => number;
}): BullmqDispatch {
  const { settings, registry, log } = deps;
  const now = deps.now ?? Date.now;
  const redis = connectRedis(settings.redisUrl, {
    caPath: settings.redisCaPath,
    onError: (err) => log.warn({ err: toMessage(err) }, 'redis connection error'),
  });
  const connection = redis;
  const queues = new Map<string, Queue>();
  const checkers = new Map<string, Worker>();
  /** job ids whose lock expired: their worker is lost */
  const stalled = new Set<string>();
  const attempts = new Map<string, Attempt>();
  let closed = false;

  function queueOf(worker: string): Queue {
    let queue = queues.get(worker);
    if (queue === undefined) {
      queue = new Queue(workerQueueName(worker), { connection });
      queue.on('error', (err) => log.warn({ worker, err: toMessage(err) }, 'build queue error'));
      queues.set(worker, queue);
      // BullMQ's stalled check, run by the server too: a dead worker cannot check its own queue
      const checker = new Worker(workerQueueName(worker), undefined, {
        connection,
        autorun: false,
        lockDuration: settings.lockDurationMs,
        stalledInterval: settings.stalledIntervalMs,
        maxStalledCount: 0,
      });
      checker.on('stalled', (jobId) => stalled.add(jobId));
      checker.on('error', (err) => log.warn({ worker, err: toMessage(err) }, 'stalled check error'));
      checker.startStalledCheckTimer().catch((err: unknown) => log.warn({ worker, err: toMessage(err) }, 'stalled check could not start'));
      checkers.set(worker, checker);
    }
    return queue;
  }

  const place = createPlacement({ registry, affinityWaitMs: settings.affinityWaitMs, lineageWorker: deps.lineageWorker, isClosed: () => closed, now });

  async function jobData(job: ExecutionJob, attempt: number): Promise<BuildJob> {
    const { build, definition, request } = job;
    const cloneUrl = toCloneUrl(request.cloneUrl, deps.cloneUrlRewrites);
    const gitAuth = await toJobGitAuth(cloneUrl, deps);
    return {
      v: DISPATCH_PROTOCOL_VERSION,
      buildId: build.id,
      attempt,
      build: {
        id: build.id,
        repo: build.repo,
        ref: build.ref,
        sha: build.sha,
        cacheInputs: build.cacheInputs as NonNullable<Build['cacheInputs']>,
        params: { ...build.params },
      },
      definition: {
        ...definition,
        env: { ...definition.env },
        resources: { ...definition.resources },
        runsOn: [...definition.runsOn],
        caches: { ...definition.caches, paths: [...definition.caches.paths] },
      },
      request: {
        owner: request.owner,
        repo: request.repo,
        ref: request.ref,
        ...(request.pullRequest === undefined ? {} : { pullRequest: request.pullRequest }),
        ...(request.fromFork === undefined ? {} : { fromFork: request.fromFork }),
        sha: build.sha,
        cloneUrl,
        defaultBranch: request.defaultBranch,
      },
      // secrets never go to code from a fork, nor to its worker
      policy: { ...deps.policy, mounts: deps.policy.mounts.map((m) => ({ ...m })), secretEnv: request.fromFork === true ? {} : { ...deps.policy.secretEnv } },
      envImage: job.envImage ?? null,
      gitAuth,
    };
  }

  async function runAttempt(job: ExecutionJob, state: Attempt, excluded: ReadonlySet<string>, signal: AbortSignal, report: (changes: Partial<Build>) => void) {
    const buildId = job.build.id;
    const worker = await place(job, excluded, signal, report);
    if (worker === null) return { kind: 'end', end: toStopEnd(signal.reason as StopReason) } satisfies AttemptResult;
    state.worker = worker;
    state.taken = false;
    const jobId = jobIdOf(buildId, state.attempt);
    const key = logStreamKey(buildId, state.attempt);
    const reader = redis.duplicate();
    reader.on('error', () => undefined);
    let cancelSent = false;
    try {
      job.log.line(`[autobuilder] dispatched to worker ${worker}${state.attempt > 1 ? ` (attempt ${state.attempt})` : ''}`);
      report({ description: `Dispatched to worker ${worker}` });
      const queue = queueOf(worker);
      // a failed job is kept a while: its reason is what the build's description says
      await queue.add('build', await jobData(job, state.attempt), { jobId, removeOnComplete: true, removeOnFail: { age: 3600 }, attempts: 1 });
      let after = '0-0';
      let lookedAt = now();
      /** set once the job has ended without an end entry read: one more read, then this */
      let orphaned: BuildEnd | null = null;
      for (;;) {
        if (signal.aborted && !cancelSent) {
          cancelSent = true;
          // still in the worker's queue: taken out, it never runs
          const queued = await queue.getJob(jobId);
          if (!state.taken && queued !== undefined && (await queued.isWaiting())) {
            await queued.remove().catch(() => undefined);
            return { kind: 'end', end: toStopEnd(signal.reason as StopReason) } satisfies AttemptResult;
          }
          const message: CancelMessage = { buildId, attempt: state.attempt, reason: signal.reason as StopReason };
          await redis.publish(CANCEL_CHANNEL, JSON.stringify(message));
        }
        if (stalled.has(jobId)) {
          stalled.delete(jobId);
          return { kind: 'lost', worker } satisfies AttemptResult;
        }
        // the worker went away before taking it: it goes to another
        if (!state.taken && !registry.isLive(worker) && !signal.aborted) {
          const queued = await queue.getJob(jobId);
          if (queued !== undefined && (await queued.isWaiting())) {
            await queued.remove().catch(() => undefined);
            return { kind: 'replace' } satisfies AttemptResult;
          }
        }
        if (orphaned !== null && !signal.aborted) {
          // the end entry comes before the job ends: had there been one, this read would have it
          const last = await readAttemptStream(reader, key, after, 1, (id, problem) => log.warn({ buildId, id, problem }, 'stream entry refused'));
          const end = last.find((e) => e.entry.t === 'end');
          if (end === undefined) return { kind: 'end', end: orphaned } satisfies AttemptResult;
        }
        // a job that ended (a refused payload, a worker error) without an end entry: said so, never waited for
        if (orphaned === null && now() - lookedAt >= JOB_CHECK_MS) {
          lookedAt = now();
          const current = await queue.getJob(jobId);
          const jobState = current === undefined ? 'gone' : await current.getState();
          if (jobState === 'gone' || jobState === 'completed') orphaned = { state: 'error', description: `worker ${worker} ended the build without a result` };
          else if (jobState === 'failed' && /stalled/i.test(current?.failedReason ?? '')) {
            // BullMQ failed it for its expired lock: the worker is lost, whichever check saw it first
            stalled.delete(jobId);
            return { kind: 'lost', worker } satisfies AttemptResult;
          } else if (jobState === 'failed') {
            orphaned = {
              state: 'error',
              description: `worker ${worker} could not run the build: ${(current?.failedReason ?? 'no reason given').slice(0, 500)}`,
            };
          }
          if (orphaned !== null) continue;
        }
        const entries = await readAttemptStream(reader, key, after, 250, (id, problem) => log.warn({ buildId, id, problem }, 'stream entry refused'));
        for (const { id, entry } of entries) {
          after = id;
          switch (entry.t) {
            case 'taken':
              state.taken = true;
              report({ worker: entry.worker });
              break;
            case 'report':
              report(definedOnly(entry.changes));
              break;
            case 'lines':
              await job.log.lines(entry.lines);
              break;
            case 'end':
              return {
                kind: 'end',
                end: verifyArtifacts({ ...definedOnly(entry.end), state: entry.end.state, description: entry.end.description }, state),
              } satisfies AttemptResult;
            default: {
              const unreachable: never = entry;
              return unreachable;
            }
          }
        }
      }
    } finally {
      registry.release(worker, buildId);
      reader.disconnect();
      await redis.del(key).catch(() => undefined);
    }
  }

  /** A success whose artifacts the server did not receive intact is an error. */
  function verifyArtifacts(end: BuildEnd, state: Attempt): BuildEnd {
    if (end.state !== 'success') return end;
    for (const artifact of end.artifacts ?? []) {
      const got = state.uploads.get(artifact.name);
      if (got === undefined) return { state: 'error', description: `artifact ${artifact.name} was not received from worker ${state.worker ?? '?'}` };
      if (got.digest !== artifact.digest || got.size !== artifact.size) {
        return {
          state: 'error',
          description: `artifact ${artifact.name} from worker ${state.worker ?? '?'}: the server received sha256 ${got.digest}, the worker reported ${artifact.digest}`,
        };
      }
    }
    return end;
  }

  return {
    async execute(job, signal, report) {
      const buildId = job.build.id;
      const excluded = new Set<string>();
      const state: Attempt = { attempt: 1, worker: null, taken: false, uploads: new Map() };
      attempts.set(buildId, state);
      try {
        for (;;) {
          let result: AttemptResult;
          try {
            result = await runAttempt(job, state, excluded, signal, report);
          } catch (err) {
            log.error({ buildId, err: toMessage(err) }, 'build dispatch failed');
            return { state: 'error', description: `dispatch failed: ${toMessage(err)}` };
          }
          if (result.kind === 'end') return result.end;
          if (result.kind === 'replace') continue;
          excluded.add(result.worker);
          log.warn({ buildId, worker: result.worker, attempt: state.attempt }, 'worker lost mid-build');
          if (state.attempt > job.definition.retry || signal.aborted) return { state: 'error', description: `worker ${result.worker} lost` };
          job.log.line(`[autobuilder] worker ${result.worker} lost: trying again on another worker (retry: ${job.definition.retry})`);
          state.attempt += 1;
          state.uploads = new Map();
        }
      } finally {
        attempts.delete(buildId);
      }
    },

    recordUpload({ buildId, attempt, workerId, name, digest, size }) {
      const state = attempts.get(buildId);
      if (state?.attempt !== attempt || state.worker !== workerId) return false;
      state.uploads.set(name, { digest, size });
      return true;
    },

    attemptOf(buildId) {
      const state = attempts.get(buildId);
      return state === undefined ? null : { attempt: state.attempt, worker: state.worker };
    },

    async close() {
      closed = true;
      await Promise.all([...checkers.values()].map((c) => c.close().catch(() => undefined)));
      await Promise.all([...queues.values()].map((q) => q.close().catch(() => undefined)));
      redis.disconnect();
    },
  };
}
