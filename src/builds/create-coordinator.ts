import type { ArtifactStore } from '../artifacts/artifact-store.js';
import type { BuildDefinition } from '../config-repo/definition.js';
import type { ConfigRepository } from '../config-repo/config-repository.js';
import { AppError, isAppError, toMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ContainerRunner } from '../runner/container-runner.js';
import type { Caches } from '../snapshots/caches.js';
import type { Workspaces } from '../snapshots/workspaces.js';
import { listAll, type BuildStore } from '../store/build-store.js';
import { isTerminal, type Build } from './build.js';
import type { BuildEvents } from './build-events.js';
import type { BuildReporter } from './build-reporter.js';
import type { BuildLogs, BuildLogWriter } from './build-log.js';
import type { DiskReserve } from './disk-reserve.js';
import type { BuildPriority } from './build-queue.js';
import type { BuildEnd } from './build-lifecycle.js';
import { createLocalExecutor, type BuildExecutor } from './build-execution.js';
import type { BuildRequest } from './build-request.js';
import { assertRequestParams, hasOpaqueParams, resolveParams } from './build-params.js';
import { diffCacheInputs } from './cache-key.js';
import { createCacheKeyReader } from './read-cache-key.js';
import { toCloneUrl, type Checkout, type CloneUrlRewrite } from './checkout.js';
import { parseBuildRef } from './refs.js';
import { createScheduler } from './create-scheduler.js';
import type { EnvImagePlan } from '../images/env-image.js';
import type { ScheduledBuild, Scheduler } from './scheduler.js';
import { createSecretMasker, type SecretMasker } from './secret-masker.js';
import { createBuildId, type BuildPolicy, type Coordinator } from './coordinator.js';

/** What the coordinator keeps with each scheduled build: what it needs to decide and run it. */
interface Payload {
  definition: BuildDefinition;
  request: BuildRequest;
  log: BuildLogWriter;
  /** its image from a Dockerfile, once decided; null for an image named by the definition */
  envImage?: EnvImagePlan | null;
}

type Job = ScheduledBuild<Payload>;

const supersedeKey = (b: Pick<Build, 'repo' | 'ref' | 'definition'>) => `${b.repo}\n${b.ref}\n${b.definition}`;

const pullRequestKey = (t: { owner: string; repo: string; pullRequest?: number | undefined }): string | null =>
  t.pullRequest === undefined ? null : `${t.owner}/${t.repo}#${t.pullRequest}`.toLowerCase();

const priorityOf = (request: BuildRequest): BuildPriority => {
  const ref = parseBuildRef(request.ref);
  if (ref.kind === 'tag') return 'tag';
  return request.defaultBranch !== null && ref.name === request.defaultBranch ? 'default-branch' : 'other';
};

/**
 * Creates the build coordinator: it turns requests into stored builds, decides each from
 * its inputs (cache hit, join an identical build, or queue), and hands the rest to the
 * scheduler ({@link createScheduler}: every build's place and phase) and the executor
 * ({@link BuildExecutor}: running one build). Logs, reports (commit statuses, check runs) and events follow each change.
 */
export function createCoordinator(options: {
  store: BuildStore;
  logs: BuildLogs;
  configRepository: ConfigRepository;
  checkout: Checkout;
  workspaces: Workspaces;
  /** persistent caches of builds run in this process; without them definitions' caches are not mounted */
  caches?: Caches;
  runner: ContainerRunner;
  artifacts: ArtifactStore;
  /** where builds are reported on GitHub: at the changes commit statuses show (`publish`), and at every other (`progress`) */
  reports: BuildReporter;
  events: BuildEvents;
  log: Logger;
  concurrency: number;
  policy: BuildPolicy;
  cloneUrlRewrites: readonly CloneUrlRewrite[];
  /** masks known secret values in build logs and descriptions */
  mask?: SecretMasker;
  /** free-space reserve of the data volume: under it no build starts (they stay queued) */
  reserve?: DiskReserve;
  /** runs decided builds; default: in this process ({@link createLocalExecutor}) */
  executor?: BuildExecutor;
  now?: () => Date;
}): Coordinator {
  const { store, logs, configRepository, checkout, runner, reports, events, log, policy } = options;
  const now = options.now ?? (() => new Date());
  const mask = options.mask ?? createSecretMasker([]);
  const executor =
    options.executor ??
    createLocalExecutor({
      checkout,
      workspaces: options.workspaces,
      runner,
      artifacts: options.artifacts,
      log,
      policy,
      cloneUrlRewrites: options.cloneUrlRewrites,
      mask,
      now,
      ...(options.caches === undefined ? {} : { caches: options.caches }),
    });

  /** Applies `changes`, stores the build, and tells listeners (a copy, so they cannot mutate it). */
  function save(build: Build, changes: Partial<Build>): void {
    Object.assign(build, changes);
    store.update(build);
    const copy = structuredClone(build);
    if (changes.state === 'running') events.emit('build.started', copy);
    else if (changes.finishedAt !== undefined) events.emit('build.finished', copy);
    else events.emit('build.updated', copy);
    // statuses report at `publish`; a check run also shows that it started, its workspace, …
    if (!isTerminal(build.state)) reports.progress?.(copy);
  }

  /** Reports the build (its commit status, check run); the outboxes retry, so a failure here is only logged. */
  function publish(build: Build): void {
    reports.publish(build).catch((err: unknown) => log.error({ buildId: build.id, err: toMessage(err) }, 'build report could not be queued'));
  }

  /** Ends a build: stores its final state (description masked), closes its log with it, posts its status. */
  function finish(build: Build, buildLog: BuildLogWriter, how: BuildEnd): void {
    save(build, { ...how, description: how.description === null ? null : mask(how.description), finishedAt: now().toISOString() });
    buildLog.line(`[autobuilder] ${build.state}: ${build.description ?? ''}`);
    buildLog.close();
    publish(build);
  }

  /** Why a build that must run could not reuse an earlier one. */
  function cacheMissOf(build: Build, request: BuildRequest): Build['cacheMiss'] {
    const previous = store.findPrevious(build.repo, build.definition, build.id);
    return {
      comparedWith: previous?.id ?? null,
      differs: previous?.cacheInputs && build.cacheInputs ? diffCacheInputs(previous.cacheInputs, build.cacheInputs) : [],
      forced: request.force === true || hasOpaqueParams(build.params ?? {}),
    };
  }

  const scheduler: Scheduler<Payload> = createScheduler<Payload>({
    concurrency: options.concurrency,
    backlog: policy.backlog,
    cancelRunningOnSupersede: policy.cancelRunningOnSupersede,
    hooks: {
      update(job, changes, withStatus) {
        save(job.build, changes);
        if (withStatus) publish(job.build);
      },
      end: ({ build, payload }, how) => finish(build, payload.log, how),
      run: ({ build, payload }, signal) =>
        executor.execute(
          { build, definition: payload.definition, request: payload.request, log: payload.log, envImage: payload.envImage ?? null },
          signal,
          (changes) => save(build, changes),
        ),
      leading: ({ build, payload }) => ({ cacheMiss: cacheMissOf(build, payload.request) }),
      // before the slot frees: what the build wrote may have taken the volume under its reserve
      afterRun: async () => {
        await options.reserve?.check();
      },
      blocked: () => options.reserve?.reason() ?? null,
      onError: (err, buildId) => log.error({ buildId, err: toMessage(err) }, 'build job crashed'),
    },
  });

  const readCacheKey = createCacheKeyReader({
    checkout,
    runner,
    defaultImage: policy.defaultImage,
    cloneUrlRewrites: options.cloneUrlRewrites,
    readConfigContext: (input) => configRepository.readContext(input),
    // workers build env images on their own engines: there the tag, which names the content, is the key's
    envImageKey: options.executor === undefined ? 'id' : 'tag',
  });

  // when the volume crosses its reserve: waiting builds start (or stop starting), and say why they wait
  options.reserve?.onChange(() => scheduler.refresh());
  // the volume the server needs is nearly full: whatever fills it, running builds stop
  options.reserve?.onCritical((reason) => scheduler.stopRunning({ kind: 'disk-critical', reason }));

  /** Decides one build: cache hit, joined to an identical build in flight, or queued. */
  async function decide(job: Job, signal: AbortSignal): Promise<void> {
    const { build, payload } = job;
    const { definition, request, log: buildLog } = payload;
    const { cacheInputs, cacheKey, envImage } = await readCacheKey(build, definition, request, signal);
    payload.envImage = envImage;
    save(build, { cacheKey, cacheInputs });
    // an opaque parameter (`_NAME`) forces a new build without changing what is built
    const force = request.force === true || hasOpaqueParams(build.params ?? {});
    const hit = force ? null : store.findSuccessByCacheKey(cacheKey);
    if (hit !== null) {
      buildLog.line(`[autobuilder] cache hit: build ${hit.id} had the same inputs (cache key ${cacheKey})`);
      scheduler.endDecision(build.id, {
        state: 'success',
        cached: true,
        sourceBuildId: hit.id,
        exitCode: hit.exitCode,
        artifacts: structuredClone(hit.artifacts),
        description: `Cached: same inputs as build ${hit.id}`,
      });
      return;
    }
    if (scheduler.queue(build.id, { cacheKey, join: !force }) === 'joined') {
      buildLog.line(`[autobuilder] coalesced with build ${build.sourceBuildId ?? '?'}, which has the same inputs (cache key ${cacheKey})`);
    }
  }

  /** Takes a stored build into the scheduler (`deciding`): from here on /api/queue and /monitor say why it waits. */
  function admit(build: Build, definition: BuildDefinition, request: BuildRequest, buildLog: BuildLogWriter): { job: Job; signal: AbortSignal } {
    const job: Job = {
      build,
      priority: priorityOf(request),
      supersedeKey: supersedeKey(build),
      pullRequestKey: pullRequestKey(request),
      payload: { definition, request, log: buildLog },
    };
    return { job, signal: scheduler.admit(job) };
  }

  /**
   * Decides an admitted build, ending it `error` when that fails, or `cancelled` when a
   * cancel aborted it meanwhile (a fetch from a remote that never answers is stopped at once).
   */
  async function decideOrFail({ job, signal }: { job: Job; signal: AbortSignal }): Promise<void> {
    try {
      await decide(job, signal);
    } catch (err) {
      if (!signal.aborted) log.error({ buildId: job.build.id, err: toMessage(err) }, 'build could not be prepared');
      // a cancel meanwhile makes this `cancelled`, whatever the error
      scheduler.endDecision(job.build.id, { state: 'error', description: isAppError(err) ? err.message : `internal error: ${toMessage(err)}` });
    }
  }

  /** See {@link Coordinator.cancel}. */
  async function cancelBuild(buildId: string, reason = 'cancelled'): Promise<Build> {
    const build = store.get(buildId);
    if (build === null) throw new AppError('NOT_FOUND', `no build ${buildId}`, { status: 404 });
    if (isTerminal(build.state)) throw new AppError('CONFLICT', `build ${buildId} has already ended (${build.state})`, { status: 409 });
    if (!(await scheduler.cancel(buildId, reason))) {
      throw new AppError('CONFLICT', `build ${buildId} is not held by this server (queued before a restart that has not resumed it yet); try again`, {
        status: 409,
      });
    }
    return store.get(buildId) ?? build;
  }

  return {
    async submit(input) {
      const reopened = pullRequestKey(input);
      if (reopened !== null) scheduler.reopen(reopened);
      let rlog = log.child({ repo: `${input.owner}/${input.repo}`, ref: input.ref, sha: input.sha, deliveryId: input.deliveryId });
      let request = input;
      let lookup;
      try {
        lookup = await configRepository.lookup({ owner: request.owner, repo: request.repo, ref: request.definitionsRef ?? request.ref });
      } catch (err) {
        const reason = isAppError(err) ? err.message : `internal error: ${toMessage(err)}`;
        rlog.warn({ reason }, 'build request not matched');
        if (!isAppError(err)) throw err;
        return { builds: [], reason };
      }
      if (lookup.definitions.length === 0) {
        // the delivery's one line at info carries the reason
        rlog.debug({ reason: lookup.reason }, 'no build definition matches');
        return { builds: [], reason: lookup.reason };
      }
      if (request.definitions !== undefined) {
        const wanted = new Set(request.definitions);
        const kept = lookup.definitions.filter((d) => wanted.has(d.name));
        if (kept.length === 0) {
          const reason = `no build definition ${request.definitions.join(', ')} matches ${request.definitionsRef ?? request.ref} any more`;
          rlog.debug({ reason }, 'no build definition matches');
          return { builds: [], reason };
        }
        lookup = { ...lookup, definitions: kept };
      }
      // before any network: parameters a definition does not declare or allow are the caller's mistake (422)
      if (request.params !== undefined) assertRequestParams(lookup.definitions, request.params);
      // the first build in this process loads the container client now, before any build log
      // of this request opens (its load pauses the event loop; lines waiting meanwhile would lag)
      // (a client that cannot load is the build's error when it runs, not the request's)
      if (options.executor === undefined) await runner.warmUp?.().catch(() => undefined);
      // resolved only once some definition matches: no network for refs nothing builds
      let sha = request.sha;
      if (sha === null) {
        try {
          sha = await checkout.resolveRef({ cloneUrl: toCloneUrl(request.cloneUrl, options.cloneUrlRewrites), ref: request.ref });
        } catch (err) {
          if (!isAppError(err) || err.code === 'GIT_FAILED') throw err;
          rlog.warn({ reason: err.message }, 'build request ref not resolved');
          return { builds: [], reason: err.message };
        }
        request = { ...request, sha };
        rlog = rlog.child({ sha });
      }
      const repo = `${request.owner}/${request.repo}`;
      // From here to the insert nothing awaits: two deliveries of one tag (its push and its
      // create event) cannot both pass this check.
      const once = request.deliveryId !== null && request.force !== true && parseBuildRef(request.ref).kind === 'tag';
      const earlier = (definition: BuildDefinition): Build | undefined =>
        once
          ? store.findByCommit({ repo, ref: request.ref, sha, definition: definition.name }).find((b) => b.state !== 'error' && b.state !== 'cancelled')
          : undefined;
      const definitions: BuildDefinition[] = [];
      const skipped: string[] = [];
      for (const definition of lookup.definitions) {
        const built = earlier(definition);
        if (built === undefined) definitions.push(definition);
        else skipped.push(`${definition.name}: ${request.ref} at ${sha} has build ${built.id}`);
      }
      if (skipped.length > 0) rlog.debug({ skipped }, 'tag already built at this commit');
      if (definitions.length === 0) return { builds: [], reason: `already built: ${skipped.join('; ')}` };
      const builds: Build[] = definitions.map((definition) => ({
        id: createBuildId(),
        repo,
        ref: request.ref,
        sha,
        definition: definition.name,
        context: `autobuilder/${definition.name}`,
        state: 'queued',
        exitCode: null,
        description: 'Queued',
        cached: false,
        coalesced: false,
        incremental: false,
        parentBuildId: null,
        cacheKey: null,
        cacheInputs: null,
        sourceBuildId: null,
        cacheMiss: null,
        configSha: lookup.configSha,
        worker: null,
        params: resolveParams(definition, request.params),
        deliveryId: request.deliveryId,
        queuedAt: now().toISOString(),
        startedAt: null,
        finishedAt: null,
        artifacts: [],
      }));
      // all builds of the request and its delivery's `processed` mark in one transaction:
      // a crash here never leaves a delivery half built or built twice on recovery
      store.insertForRequest(builds, request);
      const opened = builds.map((build, i) => {
        const definition = definitions[i] as BuildDefinition;
        const buildLog = logs.open(build.id);
        buildLog.line(`[autobuilder] build ${build.id}: ${build.repo} ${build.ref} ${build.sha} (${definition.file}: ${definition.script})`);
        // admitted before it is announced: whoever hears of it finds why it waits
        const admitted = admit(build, definition, request, buildLog);
        events.emit('build.queued', structuredClone(build));
        rlog.debug({ buildId: build.id, definition: definition.name }, 'build queued');
        return admitted;
      });
      for (const admitted of opened) await decideOrFail(admitted);
      return { builds, reason: null };
    },

    cancel: cancelBuild,

    async cancelPullRequest(target, reason) {
      const ids = scheduler.closePullRequest(pullRequestKey(target) as string, reason);
      return ids.map((id) => store.get(id)).filter((b): b is Build => b !== null);
    },

    isBacklogFull: () => scheduler.isBacklogFull(),

    queueInfo: () => scheduler.info(),

    async resume() {
      const stranded = listAll(store, { state: 'queued' }).reverse();
      for (const build of stranded) {
        const request = store.getRequest(build.id);
        const old = ((await logs.read(build.id)) ?? Buffer.alloc(0)).toString('utf8').replace(/\n$/, '');
        const buildLog = logs.open(build.id);
        for (const line of old === '' ? [] : old.split('\n')) buildLog.line(line);
        buildLog.line('[autobuilder] resumed after a restart');
        Object.assign(build, { coalesced: false, sourceBuildId: null });
        let definition: BuildDefinition | undefined;
        try {
          if (request !== null) {
            const lookup = await configRepository.lookup({ owner: request.owner, repo: request.repo, ref: request.definitionsRef ?? request.ref });
            definition = lookup.definitions.find((d) => d.name === build.definition);
          }
        } catch (err) {
          log.warn({ buildId: build.id, err: toMessage(err) }, 'definitions of a resumed build could not be read');
        }
        if (request === null || definition === undefined) {
          finish(build, buildLog, { state: 'error', description: 'could not be resumed after a restart: its request or definition is gone' });
          continue;
        }
        await decideOrFail(admit(build, definition, request, buildLog));
      }
      if (stranded.length > 0) log.info({ resumed: stranded.length }, 'resumed queued builds');
      return stranded.length;
    },

    async shutdown(graceMs) {
      scheduler.stop();
      const drained = scheduler.idle();
      const timer = new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), graceMs).unref());
      if ((await Promise.race([drained, timer])) === 'late') {
        scheduler.stopRunning({ kind: 'cancelled', description: 'autobuilder stopped' });
        await drained;
      }
    },

    idle: () => scheduler.idle(),
  };
}
