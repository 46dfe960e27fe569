import { toGitHost } from '../builds/checkout.js';
import type { ExecutionJob, ExecutionPolicy } from '../builds/build-execution.js';
import { toLineageBranch } from '../builds/refs.js';
import type { Config } from '../config/schema.js';
import type { GitHubAuth } from '../github/github-auth.js';
import type { BullmqDispatch, DispatchSettings } from '../dispatch/bullmq-dispatch.js';
import { createWorkerRegistry, type WorkerRegistry } from '../dispatch/worker-registry.js';
import type { Logger } from '../logger.js';
import type { BuildStore } from '../store/build-store.js';

/** The server's side of build workers (bullmq mode). */
export interface WorkerDispatch {
  registry: WorkerRegistry;
  dispatch: BullmqDispatch;
  settings: DispatchSettings;
  /** worker id → token, for the worker routes' guard */
  tokens: Readonly<Record<string, string>>;
}

/**
 * ms a git token in a worker's job stays valid at least: the job may wait in the worker's
 * queue, and a GitHub App's installation token lives an hour (a token is asked for anew when
 * the one held would not last this long).
 */
export const WORKER_TOKEN_VALIDITY_MS = 30 * 60_000;

/** Builds of one lineage looked at to find the worker that holds its head. */
const LINEAGE_LOOKBACK = 50;

/**
 * Creates the worker registry and the bullmq dispatcher from `config.dispatch`. A build's
 * lineage worker is the one that ran the last green build (neither cached nor coalesced, so
 * its workspace was promoted) of the same repository, definition and branch; failing that,
 * of the repository's default branch (not for a fork's build, which never starts from it).
 * A job for a build cloning from the GitHub host carries its repository's token from `auth`
 * (an App's installation token valid {@link WORKER_TOKEN_VALIDITY_MS} more at least).
 */
export async function createWorkerDispatch(options: {
  config: Readonly<Config>;
  store: BuildStore;
  policy: ExecutionPolicy;
  auth: Pick<GitHubAuth, 'gitTokenFor'>;
  log: Logger;
}): Promise<WorkerDispatch> {
  // bullmq and ioredis are loaded only here: a server in local mode never needs them (about 400 modules)
  const { createBullmqDispatch } = await import('../dispatch/bullmq-dispatch.js');
  const { config, store, log } = options;
  const d = config.dispatch;
  const settings: DispatchSettings = {
    redisUrl: d.redis?.url ?? '',
    redisCaPath: d.redis?.caPath,
    lockDurationMs: d.lockDurationSeconds * 1000,
    stalledIntervalMs: d.stalledIntervalSeconds * 1000,
    affinityWaitMs: d.affinityWaitSeconds * 1000,
  };
  const registry = createWorkerRegistry({ ttlMs: d.heartbeatTimeoutSeconds * 1000 });
  const headWorker = (repo: string, ref: string, definition: string): string | null => {
    const builds = store.list({ repo, ref, state: 'success', limit: LINEAGE_LOOKBACK });
    return builds.find((b) => b.definition === definition && !b.cached && !b.coalesced && b.worker !== null)?.worker ?? null;
  };
  const lineageWorker = ({ build, definition, request }: ExecutionJob): string | null => {
    if (!definition.incremental) return null;
    const own = headWorker(build.repo, build.ref, definition.name);
    if (own !== null || request.fromFork === true || request.defaultBranch === null) return own;
    const fallback = `refs/heads/${request.defaultBranch}`;
    return toLineageBranch(fallback) === toLineageBranch(build.ref) ? null : headWorker(build.repo, fallback, definition.name);
  };
  const dispatch = createBullmqDispatch({
    settings,
    registry,
    lineageWorker,
    policy: options.policy,
    cloneUrlRewrites: config.cloneUrlRewrites,
    gitCredentials: {
      host: toGitHost(config.github.apiUrl),
      tokenFor: (repository) => options.auth.gitTokenFor(repository, { validForMs: WORKER_TOKEN_VALIDITY_MS }),
    },
    log: log.child({ component: 'dispatch' }),
  });
  return { registry, dispatch, settings, tokens: Object.fromEntries(Object.entries(d.workers).map(([id, w]) => [id, w.token])) };
}
