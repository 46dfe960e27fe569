import { randomBytes } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { posix } from 'node:path';
import PQueue from 'p-queue';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import type { BuildDefinition } from '../config-repo/definition.js';
import type { ConfigRepository } from '../config-repo/config-repository.js';
import { AppError, isAppError, toMessage } from '../errors.js';
import type { CommitStatusPublisher } from '../github/commit-statuses.js';
import type { Logger } from '../logger.js';
import type { ContainerRunner } from '../runner/container-runner.js';
import type { Workspaces } from '../snapshots/workspaces.js';
import type { BuildStore } from '../store/build-store.js';
import type { Build } from './build.js';
import type { BuildEvents } from './build-events.js';
import type { BuildLogs, BuildLogWriter } from './build-log.js';
import type { BuildRequest } from './build-request.js';
import { diffCacheInputs, toCacheInputs, toCacheKey } from './cache-key.js';
import { toCloneUrl, type Checkout, type CloneUrlRewrite } from './checkout.js';
import { parseRef, toLineageBranch } from './refs.js';

/** Where builds run inside their container. */
export const CONTAINER_WORKDIR = '/workspace';

/** What came of a build request: the builds it made, or why none. */
export interface SubmitResult {
  builds: Build[];
  /** why no build was made; null when some were */
  reason: string | null;
}

/** Turns build requests into builds and runs them. */
export interface Coordinator {
  /**
   * Looks up the definitions for the request and makes one build per build script. Each is
   * answered from the cache (`cached`, no container), joins an identical build in flight
   * (`coalesced`), or is queued to run; statuses are posted for each. Resolves once every
   * build is decided, not run. A bad definition is not thrown: it is logged and returned
   * as `reason`.
   */
  submit(request: BuildRequest): Promise<SubmitResult>;
  /** Resolves when every queued and running build has ended (tests, shutdown). */
  idle(): Promise<void>;
}

/**
 * A build id: base-36 milliseconds, then 8 random hex digits. Ids sort by creation time as
 * plain strings (the time part stays 8 characters until 2059), which lineage heads rely on.
 */
export function createBuildId(now: () => number = Date.now): string {
  return `${now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/** A build that runs, and the builds that joined it because their inputs are the same. */
interface InFlight {
  leader: Build;
  followers: { build: Build; log: BuildLogWriter }[];
}

/**
 * Creates the build coordinator: the one place a build's life is driven, from `queued` to
 * a terminal state, with its log, cache key, workspace lineage, container, artifact and
 * statuses.
 */
export function createCoordinator(options: {
  store: BuildStore;
  logs: BuildLogs;
  configRepository: ConfigRepository;
  checkout: Checkout;
  workspaces: Workspaces;
  runner: ContainerRunner;
  artifacts: ArtifactStore;
  statuses: CommitStatusPublisher;
  events: BuildEvents;
  log: Logger;
  concurrency: number;
  defaultImage: string;
  cloneUrlRewrites: readonly CloneUrlRewrite[];
  now?: () => Date;
}): Coordinator {
  const { store, logs, configRepository, checkout, workspaces, runner, artifacts, statuses, events, log } = options;
  const now = options.now ?? (() => new Date());
  const queue = new PQueue({ concurrency: options.concurrency });
  /** builds queued or running, by cache key */
  const inFlight = new Map<string, InFlight>();

  /** Applies `changes`, stores the build, and tells listeners (a copy, so they cannot mutate it). */
  function save(build: Build, changes: Partial<Build>): Build {
    Object.assign(build, changes);
    store.update(build);
    const copy = structuredClone(build);
    if (changes.state === 'running') events.emit('build.started', copy);
    else if (changes.finishedAt !== undefined) events.emit('build.finished', copy);
    else events.emit('build.updated', copy);
    return build;
  }

  async function finish(build: Build, buildLog: BuildLogWriter, changes: Pick<Build, 'state' | 'description'> & Partial<Build>): Promise<void> {
    save(build, { ...changes, finishedAt: now().toISOString() });
    buildLog.line(`[autobuilder] ${build.state}: ${build.description ?? ''}`);
    buildLog.close();
    await statuses.publish(build);
  }

  /** Ends the followers of a finished leader with its result. */
  async function settleFollowers(flight: InFlight): Promise<void> {
    const { leader } = flight;
    for (const { build, log: followerLog } of flight.followers) {
      await finish(build, followerLog, {
        state: leader.state,
        exitCode: leader.exitCode,
        artifacts: structuredClone(leader.artifacts),
        description: `Same inputs as build ${leader.id}: ${leader.description ?? leader.state}`,
      });
    }
  }

  async function execute(build: Build, definition: BuildDefinition, request: BuildRequest, buildLog: BuildLogWriter): Promise<void> {
    const blog = log.child({ buildId: build.id, repo: build.repo, sha: build.sha });
    const started = Date.now();
    save(build, { state: 'running', startedAt: now().toISOString(), description: 'Running' });
    const ref = parseRef(build.ref);
    const scope = { owner: request.owner, repo: request.repo, definition: definition.name };
    const branch = toLineageBranch(build.ref);
    try {
      const prepared = await workspaces.prepare({
        scope,
        branch,
        fallbackBranch: request.defaultBranch === null ? null : toLineageBranch(`refs/heads/${request.defaultBranch}`),
        buildId: build.id,
        incremental: definition.incremental,
      });
      save(build, { incremental: prepared.parentBuildId !== null, parentBuildId: prepared.parentBuildId });
      buildLog.line(prepared.parentBuildId === null ? '[autobuilder] workspace: fresh' : `[autobuilder] workspace: snapshot of build ${prepared.parentBuildId}`);

      const fetched = await checkout.fetch({ owner: request.owner, repo: request.repo, cloneUrl: toCloneUrl(request.cloneUrl, options.cloneUrlRewrites), sha: build.sha, paths: [] });
      if (fetched.tree !== build.cacheInputs?.tree) {
        throw new AppError('GIT_FAILED', `commit ${build.sha} has tree ${fetched.tree}, not ${build.cacheInputs?.tree ?? '?'} as its push payload said`);
      }
      const { dir } = await checkout.checkout({ owner: request.owner, repo: request.repo, sha: build.sha, workspace: prepared.path });
      buildLog.line(`[autobuilder] checked out ${build.sha}`);

      const image = definition.baseimage ?? options.defaultImage;
      const collectTo = await artifacts.tempPath();
      buildLog.line(`[autobuilder] running ${definition.script} in ${image}`);
      const result = await runner.run({
        buildId: build.id,
        image,
        command: ['/bin/sh', definition.script],
        workspace: dir,
        workdir: CONTAINER_WORKDIR,
        env: {
          ...definition.env,
          CI: 'true',
          AUTOBUILDER: 'true',
          AUTOBUILDER_BUILD_ID: build.id,
          AUTOBUILDER_REPOSITORY: build.repo,
          AUTOBUILDER_REF: build.ref,
          AUTOBUILDER_REF_NAME: ref.name,
          AUTOBUILDER_REF_TYPE: ref.kind,
          AUTOBUILDER_SHA: build.sha,
          AUTOBUILDER_ARCHIVES: definition.archives,
          AUTOBUILDER_ARTIFACT: definition.artifact,
        },
        collect: posix.join(definition.archives, definition.artifact),
        collectTo,
        onLine: (_stream, line) => buildLog.line(line),
      });
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      if (result.exitCode !== 0) {
        await unlink(collectTo).catch(() => undefined);
        await finish(build, buildLog, { state: 'failure', exitCode: result.exitCode, description: `${definition.script} exited with code ${result.exitCode} after ${seconds} s` });
        return;
      }
      if (!result.collected) {
        await finish(build, buildLog, {
          state: 'failure',
          exitCode: 0,
          description: `artifact ${posix.join(definition.archives, definition.artifact)} was not produced`,
        });
        return;
      }
      const stored = await artifacts.put(collectTo);
      buildLog.line(`[autobuilder] artifact ${definition.artifact}: sha256 ${stored.digest} (${stored.size} bytes)`);
      await workspaces.promote({ scope, branch, buildId: build.id });
      await finish(build, buildLog, {
        state: 'success',
        exitCode: 0,
        artifacts: [{ name: definition.artifact, digest: stored.digest, size: stored.size }],
        description: `Built in ${seconds} s`,
      });
    } catch (err) {
      blog.error({ err: toMessage(err), code: isAppError(err) ? err.code : undefined }, 'build errored');
      await finish(build, buildLog, { state: 'error', description: isAppError(err) ? err.message : `internal error: ${toMessage(err)}` });
    }
  }

  /** Runs `build` as the leader of its cache key, then settles whoever joined it. */
  async function lead(flight: InFlight, definition: BuildDefinition, request: BuildRequest, buildLog: BuildLogWriter): Promise<void> {
    try {
      await execute(flight.leader, definition, request, buildLog);
    } finally {
      // the leader's result is stored before the key leaves the map: a request arriving in
      // between finds it in the store, never neither
      if (flight.leader.cacheKey !== null && inFlight.get(flight.leader.cacheKey) === flight) inFlight.delete(flight.leader.cacheKey);
      await settleFollowers(flight);
    }
  }

  /** Decides one build: cache hit, coalesced, or queued. */
  async function decide(build: Build, definition: BuildDefinition, request: BuildRequest, buildLog: BuildLogWriter): Promise<void> {
    const image = definition.baseimage ?? options.defaultImage;
    const cloneUrl = toCloneUrl(request.cloneUrl, options.cloneUrlRewrites);
    const inputsOf = async (): Promise<{ tree: string; blobs: (string | null)[] }> => {
      const paths = [definition.script];
      // A tree we already hold needs no fetch: a cache hit is decided without the network.
      const known = request.tree ? await checkout.inspectTree({ owner: request.owner, repo: request.repo, tree: request.tree, paths }) : null;
      return known !== null && request.tree ? { tree: request.tree, blobs: known } : checkout.fetch({ owner: request.owner, repo: request.repo, cloneUrl, sha: build.sha, paths });
    };
    const [fetched, imageId] = await Promise.all([inputsOf(), runner.imageId(image)]);
    if (imageId === null) {
      throw new AppError('CONTAINER_FAILED', `image ${image} is not on this Docker engine (build or import it; scripts/host-setup.sh makes the default ones)`);
    }
    const cacheInputs = toCacheInputs({
      tree: fetched.tree,
      definition: { script: definition.script, archives: definition.archives, artifact: definition.artifact, image, incremental: definition.incremental },
      imageId,
      scriptBlob: fetched.blobs[0] ?? null,
      env: definition.env,
    });
    const cacheKey = toCacheKey(cacheInputs);
    save(build, { cacheKey, cacheInputs });

    if (request.force !== true) {
      const hit = store.findSuccessByCacheKey(cacheKey);
      if (hit !== null) {
        buildLog.line(`[autobuilder] cache hit: build ${hit.id} had the same inputs (cache key ${cacheKey})`);
        await finish(build, buildLog, {
          state: 'success',
          cached: true,
          sourceBuildId: hit.id,
          exitCode: hit.exitCode,
          artifacts: structuredClone(hit.artifacts),
          description: `Cached: same inputs as build ${hit.id}`,
        });
        return;
      }
      const flight = inFlight.get(cacheKey);
      if (flight !== undefined) {
        save(build, { coalesced: true, sourceBuildId: flight.leader.id, description: `Waiting for build ${flight.leader.id} (same inputs)` });
        buildLog.line(`[autobuilder] coalesced with build ${flight.leader.id}, which has the same inputs (cache key ${cacheKey})`);
        flight.followers.push({ build, log: buildLog });
        await statuses.publish(build);
        return;
      }
    }
    const previous = store.findPrevious(build.repo, build.definition, build.id);
    const cacheMiss = {
      comparedWith: previous?.id ?? null,
      differs: previous?.cacheInputs ? diffCacheInputs(previous.cacheInputs, cacheInputs) : [],
      forced: request.force === true,
    };
    save(build, { cacheMiss });
    const flight: InFlight = { leader: build, followers: [] };
    if (!inFlight.has(cacheKey)) inFlight.set(cacheKey, flight);
    await statuses.publish(build);
    void queue.add(() => lead(flight, definition, request, buildLog)).catch((err: unknown) => {
      log.error({ buildId: build.id, err: toMessage(err) }, 'build job crashed');
    });
  }

  return {
    async submit(request) {
      const rlog = log.child({ repo: `${request.owner}/${request.repo}`, ref: request.ref, sha: request.sha, deliveryId: request.deliveryId });
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
        rlog.info({ reason: lookup.reason }, 'no build definition matches');
        return { builds: [], reason: lookup.reason };
      }
      const builds: Build[] = [];
      for (const definition of lookup.definitions) {
        const build: Build = {
          id: createBuildId(),
          repo: `${request.owner}/${request.repo}`,
          ref: request.ref,
          sha: request.sha,
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
          deliveryId: request.deliveryId,
          queuedAt: now().toISOString(),
          startedAt: null,
          finishedAt: null,
          artifacts: [],
        };
        const buildLog = logs.open(build.id);
        buildLog.line(`[autobuilder] build ${build.id}: ${build.repo} ${build.ref} ${build.sha} (${definition.file}: ${definition.script})`);
        store.insert(build, request);
        events.emit('build.queued', structuredClone(build));
        builds.push(build);
        rlog.info({ buildId: build.id, definition: definition.name }, 'build queued');
        try {
          await decide(build, definition, request, buildLog);
        } catch (err) {
          rlog.error({ buildId: build.id, err: toMessage(err) }, 'build could not be prepared');
          await finish(build, buildLog, { state: 'error', description: isAppError(err) ? err.message : `internal error: ${toMessage(err)}` });
        }
      }
      return { builds, reason: null };
    },
    async idle() {
      await queue.onIdle();
    },
  };
}
