import { randomBytes } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { posix } from 'node:path';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import type { BuildDefinition } from '../config-repo/definition.js';
import type { ConfigRepository } from '../config-repo/config-repository.js';
import { AppError, isAppError, toMessage } from '../errors.js';
import type { CommitStatusPublisher } from '../github/commit-statuses.js';
import type { Logger } from '../logger.js';
import type { ContainerRunner } from '../runner/container-runner.js';
import type { PreparedWorkspace, Workspaces } from '../snapshots/workspaces.js';
import { listAll, type BuildStore } from '../store/build-store.js';
import { isTerminal, type Build } from './build.js';
import type { BuildEvents } from './build-events.js';
import type { BuildLogs, BuildLogWriter } from './build-log.js';
import type { DiskReserve } from './disk-reserve.js';
import { createBuildQueue, type BuildPriority, type QueuePosition } from './build-queue.js';
import type { BuildRequest, PullRequestTarget } from './build-request.js';
import { diffCacheInputs, toCacheInputs, toCacheKey } from './cache-key.js';
import { toCloneUrl, type Checkout, type CloneUrlRewrite } from './checkout.js';
import { parseBuildRef, toLineageBranch, toPullRequestRef } from './refs.js';
import { createPieceMasker, createSecretMasker, type SecretMasker } from './secret-masker.js';

/** Where builds run inside their container. */
export const CONTAINER_WORKDIR = '/workspace';

/** What came of a build request: the builds it made, or why none. */
export interface SubmitResult {
  builds: Build[];
  /** why no build was made; null when some were */
  reason: string | null;
}

/** The queue as the API shows it. */
export interface QueueInfo {
  concurrency: number;
  backlog: number;
  running: string[];
  waiting: (QueuePosition & { reason: string })[];
}

/** Server-wide limits and policies of builds. */
export interface BuildPolicy {
  defaultImage: string;
  /** seconds a build may run when its definition says nothing */
  defaultTimeoutSeconds: number;
  /** no definition may ask for more */
  maxTimeoutSeconds: number;
  /** seconds without an output line before a build is stopped; null: never */
  outputTimeoutSeconds: number | null;
  /** the maxima (and defaults) of container resources */
  maxResources: { memoryBytes: number; cpus: number; pidsLimit: number };
  /** bytes a build may add to its workspace, and the most a definition may ask for; null: no quota */
  diskQuotaBytes: number | null;
  /** bytes the collected artifact may have; a bigger one ends the build `failure` */
  maxArtifactBytes: number;
  /** a newer push also stops the running build of the same ref and definition */
  cancelRunningOnSupersede: boolean;
  /** waiting builds past which {@link Coordinator.isBacklogFull} is true */
  backlog: number;
  /** env every build gets except those of pull requests from forks; the values are masked in logs */
  secretEnv: Readonly<Record<string, string>>;
  /** bytes a build's log may hold; a build that prints more is stopped and ends `failure` */
  maxLogBytes: number;
  /** network of builds of pull requests from forks: `none`, or `builds` (the runner's configured network) */
  forkNetwork: 'none' | 'builds';
}

/** Turns build requests into builds and runs them. */
export interface Coordinator {
  /**
   * Looks up the definitions for the request (those of `definitionsRef` when given) and
   * makes one build per build script. A request without a sha has its ref resolved at the
   * repository first. Each build is answered from the cache (`cached`, no container), joins
   * an identical build in flight (`coalesced`), or is queued (superseding waiting builds of
   * the same ref and definition); statuses are posted for each. Resolves once every build is
   * decided, not run. A webhook's request for a tag makes no build of a definition that
   * already has one for that repository, tag and commit (unless it ended `error` or
   * `cancelled`): the tag's push and create events build once. A bad definition or a ref
   * that no longer exists is not thrown: it is logged and returned as `reason`.
   * @throws AppError `GIT_FAILED` when the ref could not be resolved (the delivery is retried at the next start)
   */
  submit(request: BuildRequest): Promise<SubmitResult>;
  /**
   * Cancels a waiting or running build: a running container is killed. The build ends
   * `cancelled` and its status is posted as `error`.
   * @throws AppError `NOT_FOUND` (404), `CONFLICT` (409) when the build has ended
   */
  cancel(buildId: string, reason?: string): Promise<Build>;
  /**
   * Cancels the waiting builds of a pull request (those of its `refs/pull/<n>/head`); running
   * ones are left to finish, and so is a waiting one that builds of other refs joined
   * (same inputs). Resolves with the builds it cancelled then; a build still being decided
   * at that moment is cancelled when it reaches the queue, unless a new request of the pull
   * request (reopened) came after the close.
   */
  cancelPullRequest(target: PullRequestTarget, reason: string): Promise<Build[]>;
  /** True when as many builds wait as the backlog allows: the manual API then answers 503. */
  isBacklogFull(): boolean;
  queueInfo(): QueueInfo;
  /**
   * At start: decides again the builds a previous process left queued (same ids, logs
   * kept), in the order they were queued.
   */
  resume(): Promise<number>;
  /**
   * Stops taking work, lets running builds finish for `graceMs`, then cancels the rest
   * ("autobuilder stopped"). Waiting builds stay queued in the store for {@link resume}.
   */
  shutdown(graceMs: number): Promise<void>;
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

/** `bytes` as MiB for logs and descriptions, e.g. `16 MiB` (or `1.5 MiB`). */
const toMiB = (bytes: number): string => `${Number((bytes / 1024 ** 2).toFixed(1))} MiB`;

/** Why a running build was stopped, carried as its AbortController's reason. */
type StopReason =
  | { kind: 'timeout'; seconds: number }
  | { kind: 'output-timeout'; seconds: number }
  | { kind: 'cancelled'; description: string }
  | { kind: 'log-limit'; bytes: number }
  | { kind: 'disk-critical'; reason: string };

class BuildStopped extends Error {
  constructor(readonly reason: StopReason) {
    super('build stopped');
  }
}

/** A build that runs, and the builds that joined it because their inputs are the same. */
interface InFlight {
  leader: Build;
  followers: { build: Build; log: BuildLogWriter }[];
}

/** A leader waiting for a slot, with what it needs to run. */
interface Waiting {
  flight: InFlight;
  definition: BuildDefinition;
  request: BuildRequest;
  log: BuildLogWriter;
}

const supersedeKey = (b: Pick<Build, 'repo' | 'ref' | 'definition'>) => `${b.repo}\n${b.ref}\n${b.definition}`;

/**
 * Creates the build coordinator: the one place a build's life is driven, from `queued` to
 * a terminal state, with its log, cache key, queue slot, workspace lineage, container,
 * artifact and statuses.
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
  policy: BuildPolicy;
  cloneUrlRewrites: readonly CloneUrlRewrite[];
  /** masks known secret values in build logs and descriptions */
  mask?: SecretMasker;
  /** free-space reserve of the data volume: under it no build starts (they stay queued) */
  reserve?: DiskReserve;
  now?: () => Date;
}): Coordinator {
  const { store, logs, configRepository, checkout, workspaces, runner, artifacts, statuses, events, log, policy } = options;
  const now = options.now ?? (() => new Date());
  const mask = options.mask ?? createSecretMasker([]);
  const queue = createBuildQueue({
    concurrency: options.concurrency,
    onError: (err, buildId) => log.error({ buildId, err: toMessage(err) }, 'build job crashed'),
    canStart: () => options.reserve?.isLow() !== true,
  });
  /** builds queued or running, by cache key */
  const inFlight = new Map<string, InFlight>();
  /** leaders waiting for a slot, by build id */
  const waiting = new Map<string, Waiting>();
  /**
   * Pull requests closed since their last build request, by `owner/repo#n`, with the reason:
   * a request still being decided when its pull request closed is cancelled as it reaches
   * the queue. A later request of that pull request (reopened) clears it; kept one hour.
   */
  const closedPullRequests = new Map<string, { reason: string; at: number }>();
  const pullRequestKey = (t: { owner: string; repo: string; pullRequest?: number | undefined }): string | null =>
    t.pullRequest === undefined ? null : `${t.owner}/${t.repo}#${t.pullRequest}`.toLowerCase();
  /** True when builds of other refs joined this waiting build (same inputs): they still need it to run. */
  const joinedByOtherRefs = (item: Waiting): boolean => item.flight.followers.some((f) => f.build.ref !== item.flight.leader.ref);
  /** running leaders, by build id */
  const running = new Map<string, { build: Build; controller: AbortController }>();
  /** builds being decided (cache key, fetch), by build id: a cancel aborts their git work */
  const deciding = new Map<string, { controller: AbortController; done: Promise<void> }>();
  let accepting = true;

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
    save(build, { ...changes, description: changes.description === null ? null : mask(changes.description), finishedAt: now().toISOString() });
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

  function releaseKey(flight: InFlight): void {
    const key = flight.leader.cacheKey;
    if (key !== null && inFlight.get(key) === flight) inFlight.delete(key);
  }

  const priorityOf = (request: BuildRequest): BuildPriority => {
    const ref = parseBuildRef(request.ref);
    if (ref.kind === 'tag') return 'tag';
    return request.defaultBranch !== null && ref.name === request.defaultBranch ? 'default-branch' : 'other';
  };

  function stopMessage(reason: StopReason): Pick<Build, 'state' | 'description'> {
    switch (reason.kind) {
      case 'timeout':
        return { state: 'error', description: `timed out after ${reason.seconds} s` };
      case 'output-timeout':
        return { state: 'error', description: `no output for ${reason.seconds} s` };
      case 'cancelled':
        return { state: 'cancelled', description: reason.description };
      case 'log-limit':
        return { state: 'failure', description: `output passed the log limit of ${toMiB(reason.bytes)} (builds.maxLogBytes)` };
      case 'disk-critical':
        return { state: 'error', description: `stopped: ${reason.reason}` };
      default: {
        const unreachable: never = reason;
        return unreachable;
      }
    }
  }

  async function execute(
    build: Build,
    definition: BuildDefinition,
    request: BuildRequest,
    buildLog: BuildLogWriter,
    controller: AbortController,
  ): Promise<void> {
    const blog = log.child({ buildId: build.id, repo: build.repo, sha: build.sha });
    const { signal } = controller;
    const checkpoint = () => {
      if (signal.aborted) throw new BuildStopped(signal.reason as StopReason);
    };
    const started = Date.now();
    save(build, { state: 'running', startedAt: now().toISOString(), description: 'Running' });
    const ref = parseBuildRef(build.ref);
    const scope = { owner: request.owner, repo: request.repo, definition: definition.name };
    const branch = toLineageBranch(build.ref);
    const timeoutSeconds = Math.min(definition.timeoutSeconds ?? policy.defaultTimeoutSeconds, policy.maxTimeoutSeconds);
    const timer = setTimeout(() => controller.abort({ kind: 'timeout', seconds: timeoutSeconds } satisfies StopReason), timeoutSeconds * 1000);
    const outputSeconds = definition.outputTimeoutSeconds ?? policy.outputTimeoutSeconds;
    let watchdog: NodeJS.Timeout | undefined;
    const feedWatchdog = () => {
      if (outputSeconds === null) return;
      clearTimeout(watchdog);
      watchdog = setTimeout(() => controller.abort({ kind: 'output-timeout', seconds: outputSeconds } satisfies StopReason), outputSeconds * 1000);
    };
    try {
      const prepared = await workspaces.prepare({
        scope,
        branch,
        // a fork's code never starts from a trusted workspace: what earlier builds left there
        // (built with secrets) is not for it to read
        fallbackBranch: request.defaultBranch === null || request.fromFork === true ? null : toLineageBranch(`refs/heads/${request.defaultBranch}`),
        buildId: build.id,
        incremental: definition.incremental,
        diskQuotaBytes: policy.diskQuotaBytes === null ? null : Math.min(definition.resources.diskBytes ?? policy.diskQuotaBytes, policy.diskQuotaBytes),
      });
      save(build, { incremental: prepared.parentBuildId !== null, parentBuildId: prepared.parentBuildId });
      buildLog.line(
        prepared.parentBuildId === null ? '[autobuilder] workspace: fresh' : `[autobuilder] workspace: snapshot of build ${prepared.parentBuildId}`,
      );
      buildLog.line(
        prepared.diskQuota.enforced
          ? `[autobuilder] disk quota: the build may add ${toMiB(prepared.diskQuota.bytes)} to its workspace`
          : `[autobuilder] disk quota: not enforced (${prepared.diskQuota.reason})`,
      );
      checkpoint();

      const fetched = await checkout.fetch({
        owner: request.owner,
        repo: request.repo,
        cloneUrl: toCloneUrl(request.cloneUrl, options.cloneUrlRewrites),
        sha: build.sha,
        paths: [],
        signal,
      });
      if (fetched.tree !== build.cacheInputs?.tree) {
        throw new AppError('GIT_FAILED', `commit ${build.sha} has tree ${fetched.tree}, not ${build.cacheInputs?.tree ?? '?'} as its push payload said`);
      }
      const { dir } = await checkout.checkout({ owner: request.owner, repo: request.repo, sha: build.sha, workspace: prepared.path, signal });
      buildLog.line(`[autobuilder] checked out ${build.sha}`);
      checkpoint();

      const image = definition.baseimage ?? policy.defaultImage;
      const collectTo = await artifacts.tempPath();
      const cap = policy.maxResources;
      const resources = {
        memoryBytes: Math.min(definition.resources.memoryBytes ?? cap.memoryBytes, cap.memoryBytes),
        cpus: Math.min(definition.resources.cpus ?? cap.cpus, cap.cpus),
        pidsLimit: Math.min(definition.resources.pidsLimit ?? cap.pidsLimit, cap.pidsLimit),
      };
      buildLog.line(`[autobuilder] running ${definition.script} in ${image} (timeout ${timeoutSeconds} s)`);
      feedWatchdog();
      const pieceMaskers = { stdout: createPieceMasker(mask), stderr: createPieceMasker(mask) };
      let logCut = false;
      const result = await runner.run({
        buildId: build.id,
        image,
        command: ['/bin/sh', definition.script],
        workspace: dir,
        workdir: CONTAINER_WORKDIR,
        env: {
          ...definition.env,
          // secrets never go to code from a fork (https://securitylab.github.com/research/github-actions-preventing-pwn-requests/)
          ...(request.fromFork === true ? {} : policy.secretEnv),
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
          ...(request.pullRequest === undefined ? {} : { AUTOBUILDER_PULL_REQUEST: String(request.pullRequest) }),
        },
        collect: posix.join(definition.archives, definition.artifact),
        collectTo,
        maxCollectBytes: policy.maxArtifactBytes,
        resources,
        signal,
        // anyone can open a pull request from a fork: by default its code gets no network at all
        ...(request.fromFork === true && policy.forkNetwork === 'none' ? { network: 'none' } : {}),
        onLines: (stream, lines) => {
          feedWatchdog();
          if (logCut) return undefined;
          const batch: string[] = [];
          // the cap is checked before a line is written: the log never holds more than it
          let size = buildLog.size;
          for (const { text: piece, complete } of lines) {
            const text = pieceMaskers[stream].piece(piece, complete);
            if (text === null) continue;
            size += Buffer.byteLength(text) + 1;
            if (size > policy.maxLogBytes) {
              logCut = true;
              break;
            }
            batch.push(text);
          }
          const written = buildLog.lines(batch);
          if (logCut) {
            buildLog.line(
              `[autobuilder] log cut at ${buildLog.size} bytes: the build printed more than builds.maxLogBytes (${policy.maxLogBytes} bytes); it is stopped`,
            );
            controller.abort({ kind: 'log-limit', bytes: policy.maxLogBytes } satisfies StopReason);
          }
          return written;
        },
      });
      clearTimeout(watchdog);
      if (result.aborted) {
        await unlink(collectTo).catch(() => undefined);
        checkpoint();
      }
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      if ((result.exitCode !== 0 || !result.collected) && (await isOverQuota(prepared, blog))) {
        await unlink(collectTo).catch(() => undefined);
        await finish(build, buildLog, {
          state: 'failure',
          exitCode: result.exitCode,
          description: `disk quota exceeded: the build wrote ${prepared.diskQuota.enforced ? toMiB(prepared.diskQuota.bytes) : 'its limit'} to its workspace (builds.diskQuotaMiB, resources.diskMiB)`,
        });
        return;
      }
      if (result.collectTooLarge !== undefined) {
        await unlink(collectTo).catch(() => undefined);
        await finish(build, buildLog, {
          state: 'failure',
          exitCode: result.exitCode,
          description: `artifact larger than ${policy.maxArtifactBytes} bytes (builds.maxArtifactBytes): ${posix.join(definition.archives, definition.artifact)} has ${result.collectTooLarge}`,
        });
        return;
      }
      if (result.exitCode !== 0) {
        await unlink(collectTo).catch(() => undefined);
        await finish(build, buildLog, {
          state: 'failure',
          exitCode: result.exitCode,
          description: `${definition.script} exited with code ${result.exitCode} after ${seconds} s`,
        });
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
      if (err instanceof BuildStopped || signal.aborted) {
        const reason = err instanceof BuildStopped ? err.reason : (signal.reason as StopReason);
        blog.info({ reason: reason.kind }, 'build stopped');
        await finish(build, buildLog, stopMessage(reason));
        return;
      }
      blog.error({ err: toMessage(err), code: isAppError(err) ? err.code : undefined }, 'build errored');
      await finish(build, buildLog, { state: 'error', description: isAppError(err) ? err.message : `internal error: ${toMessage(err)}` });
    } finally {
      clearTimeout(timer);
      clearTimeout(watchdog);
    }
  }

  /** Runs a waiting leader in its slot, then settles whoever joined it. */
  async function lead(item: Waiting): Promise<void> {
    const { flight } = item;
    waiting.delete(flight.leader.id);
    const controller = new AbortController();
    running.set(flight.leader.id, { build: flight.leader, controller });
    try {
      await execute(flight.leader, item.definition, item.request, item.log, controller);
    } finally {
      running.delete(flight.leader.id);
      // the leader's result is stored before the key leaves the map: a request arriving in
      // between finds it in the store, never neither
      releaseKey(flight);
      await settleFollowers(flight);
      // before the slot frees: what this build wrote may have taken the volume under its reserve
      await options.reserve?.check();
    }
  }

  /** The disk-quota check of a build that failed or produced nothing; a failed read is logged, not thrown. */
  async function isOverQuota(prepared: PreparedWorkspace, blog: Logger): Promise<boolean> {
    try {
      return await workspaces.isOverQuota(prepared);
    } catch (err) {
      blog.warn({ err: toMessage(err) }, 'disk quota usage could not be read');
      return false;
    }
  }

  /** Why a waiting leader has not started, as its description says. */
  function waitingDescription(): string {
    const lowSpace = options.reserve?.reason() ?? null;
    if (lowSpace !== null) return `Queued: ${lowSpace}`;
    if (queue.size >= policy.backlog) return `Queued: backlog full (${queue.size} waiting)`;
    return queue.running >= queue.concurrency ? `Queued: all ${queue.concurrency} slots busy` : 'Queued';
  }

  // when the volume crosses its reserve: waiting builds start (or stop starting), and say why they wait
  options.reserve?.onChange((low) => {
    if (!low) queue.wake();
    void (async () => {
      for (const item of [...waiting.values()]) {
        const build = item.flight.leader;
        const description = waitingDescription();
        if (build.state !== 'queued' || build.description === description) continue;
        save(build, { description });
        await statuses.publish(build);
      }
    })().catch((err: unknown) => log.error({ err: toMessage(err) }, 'waiting builds could not be updated'));
  });

  // the volume the server needs is nearly full: whatever fills it, running builds stop
  options.reserve?.onCritical((reason) => {
    for (const { controller } of running.values()) controller.abort({ kind: 'disk-critical', reason } satisfies StopReason);
  });

  /** Ends a waiting leader (and its followers) without running it. */
  async function dropWaiting(item: Waiting, description: string): Promise<void> {
    queue.remove(item.flight.leader.id);
    waiting.delete(item.flight.leader.id);
    releaseKey(item.flight);
    await finish(item.flight.leader, item.log, { state: 'cancelled', description });
    await settleFollowers(item.flight);
  }

  /** Queues a leader: newer pushes supersede waiting builds of the same ref and definition. */
  async function enqueue(item: Waiting): Promise<void> {
    const build = item.flight.leader;
    const key = supersedeKey(build);
    for (const other of [...waiting.values()]) {
      if (other.flight.leader.id < build.id && supersedeKey(other.flight.leader) === key) await dropWaiting(other, `Superseded by build ${build.id}`);
    }
    if (policy.cancelRunningOnSupersede) {
      for (const other of running.values()) {
        if (other.build.id < build.id && supersedeKey(other.build) === key) {
          other.controller.abort({ kind: 'cancelled', description: `Superseded by build ${build.id}` } satisfies StopReason);
        }
      }
    }
    const description = waitingDescription();
    save(build, { description });
    waiting.set(build.id, item);
    await statuses.publish(build);
    const closedKey = pullRequestKey(item.request);
    const closed = closedKey === null ? undefined : closedPullRequests.get(closedKey);
    // its pull request closed while it was being decided
    if (closed !== undefined && !joinedByOtherRefs(item)) {
      await dropWaiting(item, closed.reason);
      return;
    }
    if (!accepting) return;
    queue.add({ buildId: build.id, priority: priorityOf(item.request), run: () => lead(item) });
  }

  /** Decides one build: cache hit, coalesced, or queued. */
  async function decide(build: Build, definition: BuildDefinition, request: BuildRequest, buildLog: BuildLogWriter, signal: AbortSignal): Promise<void> {
    const image = definition.baseimage ?? policy.defaultImage;
    const cloneUrl = toCloneUrl(request.cloneUrl, options.cloneUrlRewrites);
    const inputsOf = async (): Promise<{ tree: string; blobs: (string | null)[] }> => {
      const paths = [definition.script];
      // A tree we already hold needs no fetch: a cache hit is decided without the network.
      const known = request.tree ? await checkout.inspectTree({ owner: request.owner, repo: request.repo, tree: request.tree, paths }) : null;
      return known !== null && request.tree
        ? { tree: request.tree, blobs: known }
        : checkout.fetch({ owner: request.owner, repo: request.repo, cloneUrl, sha: build.sha, paths, signal });
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
    // results are shared only within a repository; a fork's only within its pull request, like its workspace lineage
    const cacheKey = toCacheKey(cacheInputs, { repository: build.repo, scope: request.fromFork === true ? toLineageBranch(build.ref) : undefined });
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
    await enqueue({ flight, definition, request, log: buildLog });
  }

  /**
   * Decides a stored build, ending it `error` when that fails, or `cancelled` when a cancel
   * aborted it meanwhile (a fetch from a remote that never answers is stopped at once).
   */
  async function decideOrFail(build: Build, definition: BuildDefinition, request: BuildRequest, buildLog: BuildLogWriter): Promise<void> {
    const controller = new AbortController();
    const decision = { controller, done: Promise.resolve() };
    deciding.set(build.id, decision);
    decision.done = (async () => {
      try {
        await decide(build, definition, request, buildLog, controller.signal);
      } catch (err) {
        if (controller.signal.aborted) {
          await finish(build, buildLog, { state: 'cancelled', description: String(controller.signal.reason) });
          return;
        }
        log.error({ buildId: build.id, err: toMessage(err) }, 'build could not be prepared');
        await finish(build, buildLog, { state: 'error', description: isAppError(err) ? err.message : `internal error: ${toMessage(err)}` });
      } finally {
        deciding.delete(build.id);
      }
    })();
    await decision.done;
  }

  /** See {@link Coordinator.cancel}. */
  async function cancelBuild(buildId: string, reason = 'cancelled'): Promise<Build> {
    const build = store.get(buildId);
    if (build === null) throw new AppError('NOT_FOUND', `no build ${buildId}`, { status: 404 });
    if (isTerminal(build.state)) throw new AppError('CONFLICT', `build ${buildId} has already ended (${build.state})`, { status: 409 });
    const item = waiting.get(buildId);
    if (item !== undefined) {
      await dropWaiting(item, reason);
      return structuredClone(item.flight.leader);
    }
    const run = running.get(buildId);
    if (run !== undefined) {
      const ended = new Promise<void>((resolve) => {
        const onFinished = (b: Build) => {
          if (b.id !== buildId) return;
          events.off('build.finished', onFinished);
          resolve();
        };
        events.on('build.finished', onFinished);
      });
      run.controller.abort({ kind: 'cancelled', description: reason } satisfies StopReason);
      await ended;
      return structuredClone(run.build);
    }
    // a follower of a coalesced build: it leaves the group and ends alone
    for (const flight of inFlight.values()) {
      const at = flight.followers.findIndex((f) => f.build.id === buildId);
      const follower = flight.followers[at];
      if (follower !== undefined) {
        flight.followers.splice(at, 1);
        await finish(follower.build, follower.log, { state: 'cancelled', description: reason });
        return structuredClone(follower.build);
      }
    }
    // still being decided (its commit being fetched): the fetch is stopped
    const decision = deciding.get(buildId);
    if (decision !== undefined) {
      decision.controller.abort(reason);
      await decision.done;
      // the decision may have ended just before the abort: the build then waits in the queue
      const after = store.get(buildId);
      if (after !== null && !isTerminal(after.state) && (waiting.has(buildId) || running.has(buildId))) return cancelBuild(buildId, reason);
      return after ?? build;
    }
    throw new AppError('CONFLICT', `build ${buildId} is being decided; try again`, { status: 409 });
  }

  return {
    async submit(input) {
      const reopened = pullRequestKey(input);
      if (reopened !== null) closedPullRequests.delete(reopened);
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
        rlog.info({ reason: lookup.reason }, 'no build definition matches');
        return { builds: [], reason: lookup.reason };
      }
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
      if (skipped.length > 0) rlog.info({ skipped }, 'tag already built at this commit');
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
        events.emit('build.queued', structuredClone(build));
        rlog.info({ buildId: build.id, definition: definition.name }, 'build queued');
        return { build, definition, buildLog };
      });
      for (const { build, definition, buildLog } of opened) await decideOrFail(build, definition, request, buildLog);
      return { builds, reason: null };
    },

    cancel: cancelBuild,

    async cancelPullRequest(target, reason) {
      const at = Date.now();
      for (const [key, mark] of closedPullRequests) if (at - mark.at > 3600_000) closedPullRequests.delete(key);
      closedPullRequests.set(pullRequestKey(target) as string, { reason, at });
      const cancelled: Build[] = [];
      const waitingOnes = listAll(store, { repo: `${target.owner}/${target.repo}`, ref: toPullRequestRef(target.pullRequest), state: 'queued' });
      for (const build of waitingOnes) {
        const item = waiting.get(build.id);
        if (item !== undefined && joinedByOtherRefs(item)) {
          log.info({ buildId: build.id }, 'build of a closed pull request left to run for the builds that joined it');
          continue;
        }
        try {
          cancelled.push(await cancelBuild(build.id, reason));
        } catch (err) {
          // ended meanwhile, or still being decided: nothing to take out of the queue
          if (!isAppError(err, 'CONFLICT')) throw err;
          log.info({ buildId: build.id, reason: err.message }, 'build of a closed pull request not cancelled');
        }
      }
      return cancelled;
    },

    isBacklogFull: () => queue.size >= policy.backlog,

    queueInfo() {
      const slotsBusy = queue.running >= queue.concurrency;
      return {
        concurrency: queue.concurrency,
        backlog: policy.backlog,
        running: [...running.keys()],
        waiting: queue.waiting().map((w) => ({
          ...w,
          reason: !accepting
            ? 'autobuilder is stopping'
            : (options.reserve?.reason() ?? (w.position > policy.backlog ? 'backlog full' : slotsBusy ? `all ${queue.concurrency} slots busy` : 'starting')),
        })),
      };
    },

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
          await finish(build, buildLog, { state: 'error', description: 'could not be resumed after a restart: its request or definition is gone' });
          continue;
        }
        await decideOrFail(build, definition, request, buildLog);
      }
      if (stranded.length > 0) log.info({ resumed: stranded.length }, 'resumed queued builds');
      return stranded.length;
    },

    async shutdown(graceMs) {
      accepting = false;
      queue.stop();
      const drained = queue.onIdle();
      const timer = new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), graceMs).unref());
      if ((await Promise.race([drained, timer])) === 'late') {
        for (const { controller } of running.values()) controller.abort({ kind: 'cancelled', description: 'autobuilder stopped' } satisfies StopReason);
        await drained;
      }
    },

    async idle() {
      await queue.onIdle();
    },
  };
}
