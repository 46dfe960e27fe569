import type { BuildDefinition } from '../config-repo/definition.js';
import { isOverlapping } from '../config/container-path.js';
import type { HostMount } from '../config/host-mount.js';
import { AppError, toMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { BindMount } from '../runner/container-runner.js';
import type { CacheOutcome, CacheScope, Caches, PreparedCache } from '../snapshots/caches.js';
import type { BuildLogWriter } from './build-log.js';
import type { BuildRequest } from './build-request.js';
import type { BuildRef } from './refs.js';

/** `bytes` as MiB, e.g. `16 MiB` (or `1.5 MiB`). */
const toMiB = (bytes: number): string => `${Number((bytes / 1024 ** 2).toFixed(1))} MiB`;

/** What a build mounts besides its workspace: its caches' snapshots and the server's host mounts. */
export interface BuildMounts {
  /** the container's bind mounts: each cache's snapshot (read-write), then each host mount that applies */
  readonly binds: readonly BindMount[];
  /** After the build succeeded: promotes each cache (see `Caches.promote`) and logs what became of it. Never throws. */
  promote(): Promise<void>;
  /**
   * At the end of every build: removes the snapshots {@link BuildMounts.promote} did not take
   * (a build that did not succeed leaves every cache as it was) and says so in the log.
   * Idempotent; never throws (a snapshot left behind is collected by retention).
   */
  release(): Promise<void>;
}

/**
 * The cache scope of a build: its repository's, or for a pull request from a fork that pull
 * request's own (a fork never reads the caches trusted builds filled, nor fills theirs); null
 * for a fork's build without a pull request number, which gets no caches.
 */
export function toCacheScope(request: Pick<BuildRequest, 'fromFork' | 'pullRequest'>, ref: BuildRef): CacheScope | null {
  if (request.fromFork !== true) return { kind: 'repository' };
  const number = ref.kind === 'pull' ? Number(ref.name) : request.pullRequest;
  return number === undefined ? null : { kind: 'pull', number };
}

/**
 * Prepares the mounts of one build: the host mounts of `builds.mounts` that apply (a fork's
 * build gets only those with `forks: true`) and a snapshot of each cache the definition lists
 * (capped at the least of `resources.cacheMiB` and `builds.cacheMaxMiB`; `cacheMaxBytes` 0
 * turns caches off), each line of it logged to the build log.
 * @throws AppError `CONFIG_INVALID` when a cache path overlaps a host mount's container path;
 *   `SNAPSHOT_FAILED` when a cache snapshot cannot be made
 */
export async function openBuildMounts(input: {
  caches: Caches | undefined;
  cacheMaxBytes: number;
  hostMounts: readonly HostMount[];
  definition: Pick<BuildDefinition, 'name' | 'caches'>;
  request: Pick<BuildRequest, 'owner' | 'repo' | 'fromFork' | 'pullRequest'>;
  ref: BuildRef;
  buildId: string;
  buildLog: Pick<BuildLogWriter, 'line'>;
  log: Logger;
}): Promise<BuildMounts> {
  const { definition, request, buildLog, buildId } = input;
  const fromFork = request.fromFork === true;
  const hostMounts = input.hostMounts.filter((m) => !fromFork || m.forks);
  for (const path of definition.caches.paths) {
    const clash = hostMounts.find((m) => isOverlapping(m.container, path));
    if (clash !== undefined) {
      throw new AppError(
        'CONFIG_INVALID',
        `cache ${path} of ${definition.name} overlaps the host mount at ${clash.container} (builds.mounts): rename one of them`,
      );
    }
  }
  for (const m of hostMounts) buildLog.line(`[autobuilder] host mount ${m.host} at ${m.container} (${m.readOnly ? 'read-only' : 'writable'})`);
  const leftOut = input.hostMounts.length - hostMounts.length;
  if (leftOut > 0) buildLog.line(`[autobuilder] host mounts: ${leftOut} left out (a fork's build gets only those with forks: true)`);

  let prepared: readonly PreparedCache[] = [];
  const scope = toCacheScope(request, input.ref);
  const owner = scope === null ? null : { owner: request.owner, repo: request.repo, scope };
  const whose = scope?.kind === 'pull' ? ` (pull request #${scope.number}'s own cache)` : '';
  if (definition.caches.paths.length > 0) {
    if (input.cacheMaxBytes === 0) buildLog.line('[autobuilder] caches: off (builds.cacheMaxMiB is 0)');
    else if (input.caches === undefined) buildLog.line('[autobuilder] caches: none (not kept where this build runs)');
    else if (owner === null) buildLog.line("[autobuilder] caches: none (a fork's build without a pull request number)");
    else {
      const capBytes = Math.min(definition.caches.maxBytes ?? input.cacheMaxBytes, input.cacheMaxBytes);
      prepared = await input.caches.prepare({ ...owner, buildId, paths: definition.caches.paths, capBytes });
      for (const c of prepared) {
        const cap = `cap ${toMiB(c.capBytes)}, ${c.enforcedBy === 'qgroup' ? 'a Btrfs qgroup limit' : 'checked at promotion'}`;
        const from =
          c.parentBuildId !== null
            ? `snapshot of build ${c.parentBuildId}'s`
            : c.droppedHeadBytes !== null
              ? `empty: the cache held ${toMiB(c.droppedHeadBytes)}, over its cap`
              : scope?.kind === 'pull'
                ? "empty: a fork's build never reads the repository's caches"
                : 'empty';
        buildLog.line(`[autobuilder] cache ${c.path}: ${from}${whose} (${cap})`);
      }
    }
  }

  let settled = prepared.length === 0;
  const describe = (o: CacheOutcome): string => {
    switch (o.result) {
      case 'promoted':
        return `promoted${whose} (${toMiB(o.bytes)})`;
      case 'over-cap':
        return `not promoted: it holds ${toMiB(o.bytes)}, over its cap of ${toMiB(o.capBytes)} (builds.cacheMaxMiB, resources.cacheMiB); the cache stays as it was`;
      case 'superseded':
        return `not promoted: build ${o.headBuildId}, which started later, has made the cache already`;
      case 'failed':
        return `not promoted: ${o.reason}`;
      default: {
        const unreachable: never = o;
        return unreachable;
      }
    }
  };
  return {
    binds: [
      ...prepared.map((c) => ({ source: c.hostPath, target: c.path, readOnly: false })),
      ...hostMounts.map((m) => ({ source: m.host, target: m.container, readOnly: m.readOnly })),
    ],
    async promote() {
      if (settled || owner === null || input.caches === undefined) return;
      settled = true;
      for (const outcome of await input.caches.promote({ ...owner, buildId, caches: prepared })) {
        buildLog.line(`[autobuilder] cache ${outcome.path}: ${describe(outcome)}`);
        if (outcome.result === 'failed') input.log.warn({ path: outcome.path, reason: outcome.reason }, 'a cache could not be promoted');
      }
    },
    async release() {
      if (settled || input.caches === undefined) return;
      settled = true;
      buildLog.line(`[autobuilder] caches unchanged: the build did not succeed`);
      await input.caches
        .discard(prepared)
        .catch((err: unknown) => input.log.warn({ err: toMessage(err) }, 'a cache snapshot could not be removed; retention removes it'));
    },
  };
}
