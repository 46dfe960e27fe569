import { unlink } from 'node:fs/promises';
import { posix } from 'node:path';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import type { BuildDefinition } from '../config-repo/definition.js';
import { CONTAINER_WORKDIR } from '../config/container-path.js';
import type { HostMount } from '../config/host-mount.js';
import { AppError, isAppError, toMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ContainerRunner } from '../runner/container-runner.js';
import type { Caches } from '../snapshots/caches.js';
import type { PreparedWorkspace, Workspaces } from '../snapshots/workspaces.js';
import type { Build } from './build.js';
import type { BuildEnd, StopReason } from './build-lifecycle.js';
import type { BuildLogWriter } from './build-log.js';
import { openBuildMounts, type BuildMounts } from './build-mounts.js';
import { toParamEnv } from './build-params.js';
import { prepareEnvImage, type EnvImagePlan } from '../images/env-image.js';
import { createSerializeByKey, type SerializeByKey } from '../serialize-by-key.js';
import { toBuildCacheKey } from './read-cache-key.js';
import type { BuildRequest } from './build-request.js';
import { toCloneUrl, type Checkout, type CloneUrlRewrite } from './checkout.js';
import { parseBuildRef, toLineageBranch } from './refs.js';
import { createPieceMasker, type SecretMasker } from './secret-masker.js';

/** Where builds run inside their container. */
export { CONTAINER_WORKDIR };

/** Server-wide limits and policies of running builds. */
export interface ExecutionPolicy {
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
  /** env every build gets except those of pull requests from forks; the values are masked in logs */
  secretEnv: Readonly<Record<string, string>>;
  /** bytes a build's log may hold; a build that prints more is stopped and ends `failure` */
  maxLogBytes: number;
  /** network of builds of pull requests from forks: `none`, or `builds` (the runner's configured network) */
  forkNetwork: 'none' | 'builds';
  /** bytes each persistent cache may hold, and the most a definition may ask for; 0: caches off */
  cacheMaxBytes: number;
  /** host paths bound into every build container (those of forks' builds: only with `forks`) */
  mounts: readonly HostMount[];
}

/** One build to run: its record, definition, request and log. */
export interface ExecutionJob {
  /** the build's record (read only here: changes go through `report`) */
  build: Readonly<Pick<Build, 'id' | 'repo' | 'ref' | 'sha' | 'cacheInputs' | 'params'>>;
  definition: BuildDefinition;
  request: BuildRequest;
  log: BuildLogWriter;
  /** the plan of its image when its definition names a Dockerfile (decided with its cache key); absent or null: none */
  envImage?: EnvImagePlan | null;
}

/**
 * Runs one decided build: workspace snapshot → fetch and checkout → container → artifact →
 * promotion of the workspace. The scheduler's local dispatcher; a remote one implements
 * the same interface.
 */
export interface BuildExecutor {
  /**
   * Runs `job` and resolves with how it ended; never rejects (an error of ours is an
   * `error` end). `report` stores progress (`running`, the workspace's lineage, the script's
   * blob). `signal` stops the build; its reason is a {@link StopReason}.
   */
  execute(job: ExecutionJob, signal: AbortSignal, report: (changes: Partial<Build>) => void): Promise<BuildEnd>;
}

/** `bytes` as MiB for logs and descriptions, e.g. `16 MiB` (or `1.5 MiB`). */
export const toMiB = (bytes: number): string => `${Number((bytes / 1024 ** 2).toFixed(1))} MiB`;

class BuildStopped extends Error {
  constructor(readonly reason: StopReason) {
    super('build stopped');
  }
}

/** The end of a build stopped for `reason`. */
export function toStopEnd(reason: StopReason): BuildEnd {
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

/** Creates the executor that runs builds in this process, on this host's Docker engine and data volume. */
export function createLocalExecutor(deps: {
  checkout: Checkout;
  workspaces: Workspaces;
  runner: ContainerRunner;
  artifacts: Pick<ArtifactStore, 'tempPath' | 'put'>;
  log: Logger;
  policy: ExecutionPolicy;
  cloneUrlRewrites: readonly CloneUrlRewrite[];
  mask: SecretMasker;
  now: () => Date;
  /** one image build per env image tag at a time, across the builds of this host (share one between executors) */
  imageBuilds?: SerializeByKey;
  /** persistent caches of builds on this host; without them a definition's caches are not mounted */
  caches?: Caches;
}): BuildExecutor {
  const { checkout, workspaces, runner, artifacts, log, policy, mask, now } = deps;
  const imageBuilds = deps.imageBuilds ?? createSerializeByKey();

  /** The disk-quota check of a build that failed or produced nothing; a failed read is logged, not thrown. */
  async function isOverQuota(prepared: PreparedWorkspace, blog: Logger): Promise<boolean> {
    try {
      return await workspaces.isOverQuota(prepared);
    } catch (err) {
      blog.warn({ err: toMessage(err) }, 'disk quota usage could not be read');
      return false;
    }
  }

  async function execute(job: ExecutionJob, outer: AbortSignal, report: (changes: Partial<Build>) => void): Promise<BuildEnd> {
    const { build, definition, request, log: buildLog } = job;
    const blog = log.child({ buildId: build.id, repo: build.repo, sha: build.sha });
    // stops of its own (timeouts, the log limit) and the scheduler's (cancel, disk critical)
    const own = new AbortController();
    const signal = AbortSignal.any([outer, own.signal]);
    const checkpoint = () => {
      if (signal.aborted) throw new BuildStopped(signal.reason as StopReason);
    };
    const started = Date.now();
    report({ state: 'running', startedAt: now().toISOString(), description: 'Running' });
    const ref = parseBuildRef(build.ref);
    const scope = { owner: request.owner, repo: request.repo, definition: definition.name };
    const branch = toLineageBranch(build.ref);
    const timeoutSeconds = Math.min(definition.timeoutSeconds ?? policy.defaultTimeoutSeconds, policy.maxTimeoutSeconds);
    const timer = setTimeout(() => own.abort({ kind: 'timeout', seconds: timeoutSeconds } satisfies StopReason), timeoutSeconds * 1000);
    const outputSeconds = definition.outputTimeoutSeconds ?? policy.outputTimeoutSeconds;
    let watchdog: NodeJS.Timeout | undefined;
    const feedWatchdog = () => {
      if (outputSeconds === null) return;
      clearTimeout(watchdog);
      watchdog = setTimeout(() => own.abort({ kind: 'output-timeout', seconds: outputSeconds } satisfies StopReason), outputSeconds * 1000);
    };
    let mounts: BuildMounts | null = null;
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
      report({ incremental: prepared.parentBuildId !== null, parentBuildId: prepared.parentBuildId });
      buildLog.line(
        prepared.parentBuildId === null ? '[autobuilder] workspace: fresh' : `[autobuilder] workspace: snapshot of build ${prepared.parentBuildId}`,
      );
      buildLog.line(
        prepared.diskQuota.enforced
          ? `[autobuilder] disk quota: the build may add ${toMiB(prepared.diskQuota.bytes)} to its workspace`
          : `[autobuilder] disk quota: not enforced (${prepared.diskQuota.reason})`,
      );
      mounts = await openBuildMounts({
        caches: deps.caches,
        cacheMaxBytes: policy.cacheMaxBytes,
        hostMounts: policy.mounts,
        definition,
        request,
        ref,
        buildId: build.id,
        buildLog,
        log: blog,
      });
      checkpoint();

      const fetched = await checkout.fetch({
        owner: request.owner,
        repo: request.repo,
        cloneUrl: toCloneUrl(request.cloneUrl, deps.cloneUrlRewrites),
        sha: build.sha,
        paths: [definition.script],
        signal,
      });
      // the cache was decided from the tree the push payload named: the commit must have it
      if (fetched.tree !== build.cacheInputs?.tree) {
        throw new AppError('GIT_FAILED', `commit ${build.sha} has tree ${fetched.tree}, not ${build.cacheInputs?.tree ?? '?'} as its push payload said`);
      }
      const scriptBlob = fetched.blobs[0] ?? 'missing';
      if (build.cacheInputs.script !== scriptBlob) report({ cacheInputs: { ...build.cacheInputs, script: scriptBlob } });
      const { dir } = await checkout.checkout({ owner: request.owner, repo: request.repo, sha: build.sha, workspace: prepared.path, signal });
      buildLog.line(`[autobuilder] checked out ${build.sha}`);
      checkpoint();

      const cap = policy.maxResources;
      const resources = {
        memoryBytes: Math.min(definition.resources.memoryBytes ?? cap.memoryBytes, cap.memoryBytes),
        cpus: Math.min(definition.resources.cpus ?? cap.cpus, cap.cpus),
        pidsLimit: Math.min(definition.resources.pidsLimit ?? cap.pidsLimit, cap.pidsLimit),
      };
      // an image from a Dockerfile: found, or built now (its RUN steps under the build's network policy)
      const env =
        job.envImage === undefined || job.envImage === null
          ? null
          : await prepareEnvImage({
              plan: job.envImage,
              runner,
              checkout,
              owner: request.owner,
              repo: request.repo,
              tree: fetched.tree,
              ...(request.fromFork === true && policy.forkNetwork === 'none' ? { network: 'none' } : {}),
              resources,
              log: buildLog,
              mask,
              maxLogBytes: policy.maxLogBytes,
              serial: imageBuilds,
              signal,
            });
      if (env !== null && !env.ok) return env.end;
      // keyed by the image id (not the tag, as on workers) but decided before this image existed
      // (or before retention removed the one it was decided with): the key is this id's, as later builds' will be
      const rekey = job.envImage?.rekey === true || build.cacheInputs.image.startsWith('sha256:');
      if (env !== null && rekey && build.cacheInputs.image !== env.imageId) {
        const cacheInputs = { ...build.cacheInputs, image: env.imageId };
        report({ cacheInputs, cacheKey: toBuildCacheKey(cacheInputs, build, request) });
      }
      checkpoint();
      const image = env?.tag ?? definition.baseimage ?? policy.defaultImage;
      const collectTo = await artifacts.tempPath();
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
          ...toParamEnv(build.params ?? {}),
        },
        collect: posix.join(definition.archives, definition.artifact),
        collectTo,
        maxCollectBytes: policy.maxArtifactBytes,
        resources,
        signal,
        // anyone can open a pull request from a fork: by default its code gets no network at all
        ...(request.fromFork === true && policy.forkNetwork === 'none' ? { network: 'none' } : {}),
        mounts: mounts.binds,
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
            own.abort({ kind: 'log-limit', bytes: policy.maxLogBytes } satisfies StopReason);
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
      const discard = () => unlink(collectTo).catch(() => undefined);
      if ((result.exitCode !== 0 || !result.collected) && (await isOverQuota(prepared, blog))) {
        await discard();
        return {
          state: 'failure',
          exitCode: result.exitCode,
          description: `disk quota exceeded: the build wrote ${prepared.diskQuota.enforced ? toMiB(prepared.diskQuota.bytes) : 'its limit'} to its workspace (builds.diskQuotaMiB, resources.diskMiB)`,
        };
      }
      if (result.collectTooLarge !== undefined) {
        await discard();
        return {
          state: 'failure',
          exitCode: result.exitCode,
          description: `artifact larger than ${policy.maxArtifactBytes} bytes (builds.maxArtifactBytes): ${posix.join(definition.archives, definition.artifact)} has ${result.collectTooLarge}`,
        };
      }
      if (result.exitCode !== 0) {
        await discard();
        return { state: 'failure', exitCode: result.exitCode, description: `${definition.script} exited with code ${result.exitCode} after ${seconds} s` };
      }
      if (!result.collected) {
        return { state: 'failure', exitCode: 0, description: `artifact ${posix.join(definition.archives, definition.artifact)} was not produced` };
      }
      const stored = await artifacts.put(collectTo);
      buildLog.line(`[autobuilder] artifact ${definition.artifact}: sha256 ${stored.digest} (${stored.size} bytes)`);
      await workspaces.promote({ scope, branch, buildId: build.id });
      await mounts.promote();
      return {
        state: 'success',
        exitCode: 0,
        artifacts: [{ name: definition.artifact, digest: stored.digest, size: stored.size }],
        description: `Built in ${seconds} s`,
      };
    } catch (err) {
      if (err instanceof BuildStopped || signal.aborted) {
        const reason = err instanceof BuildStopped ? err.reason : (signal.reason as StopReason);
        blog.info({ reason: reason.kind }, 'build stopped');
        return toStopEnd(reason);
      }
      blog.error({ err: toMessage(err), code: isAppError(err) ? err.code : undefined }, 'build errored');
      return { state: 'error', description: isAppError(err) ? err.message : `internal error: ${toMessage(err)}` };
    } finally {
      clearTimeout(timer);
      clearTimeout(watchdog);
      // every end but a success leaves the caches as they were
      await mounts?.release();
    }
  }

  return { execute };
}
