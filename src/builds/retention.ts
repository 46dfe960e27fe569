import type { ArtifactStore } from '../artifacts/artifact-store.js';
import { ENV_IMAGE_REPOSITORY, isEnvImageTag } from '../images/build-context.js';
import type { ContainerRunner } from '../runner/container-runner.js';
import type { Logger } from '../logger.js';
import { DELIVERY_RETENTION_DAYS } from '../webhooks/inbox.js';
import type { Caches } from '../snapshots/caches.js';
import type { Workspaces } from '../snapshots/workspaces.js';
import { listAll, type BuildStore } from '../store/build-store.js';
import { isTerminal, type Build, type BuildState } from './build.js';
import type { BuildReporter } from './build-reporter.js';
import type { DeadRefs } from '../store/sqlite-dead-refs.js';
import type { BuildLogs } from './build-log.js';
import type { MirrorRefs } from './mirror-refs.js';
import { toLineageBranch } from './refs.js';

/** What one retention pass removed. */
export interface RetentionReport {
  buildsDeleted: number;
  workspacesDeleted: number;
  artifactsDeleted: number;
  /** bytes of artifacts deleted */
  bytesFreed: number;
  /** builds or artifacts that could not be deleted: logged, kept, tried again next pass */
  failures: number;
  /** deleted branches and tags and closed pull requests whose lineage heads were removed */
  deadRefsCleaned: number;
  /** `refs/autobuilder/<sha>` deleted from the git mirrors */
  mirrorRefsDeleted: number;
  /** `autobuilder/env:<hash>` tags removed: images built from Dockerfiles that no kept build uses */
  envImagesRemoved: number;
  /** cache scopes (a repository's, a fork's pull request's) removed, not used by a build for `deadRefHeadMs` */
  cacheScopesDeleted: number;
  /** cache snapshots removed: of removed scopes, and those builds left behind */
  cacheSnapshotsDeleted: number;
}

/** Retention, garbage collection and start-up clean-up of builds, workspaces and artifacts. */
export interface Retention {
  /**
   * Keeps the newest `keepPerBranch` builds of every repository + ref + definition, every
   * build that has not ended, and every lineage head; deletes the other builds with their
   * logs and workspaces (`btrfs subvolume delete` through the snapshot driver), then every
   * artifact no remaining build references and older than the grace period. A build or
   * artifact that cannot be deleted is logged and kept for the next pass; the pass goes on.
   * A ref marked dead (deleted branch or tag, closed pull request) longer than
   * `deadRefHeadMs` ago and not built since loses its lineage heads and the workspaces of
   * its builds (their records stay, by the rule above). Last, every `refs/autobuilder/<sha>`
   * of a mirror whose sha no build record names any more, or only builds of such a dead
   * ref, is deleted, so `git gc` can reclaim the commit. Then the persistent caches of every
   * repository or pull request no build used for `deadRefHeadMs` are removed, and in the
   * others the snapshots no running build holds and no head is (see `Caches.collect`).
   */
  run(): Promise<RetentionReport>;
  /**
   * At start, before any build runs: ends builds a previous process left running as
   * `error` (reporting their end: status, check run), and removes workspaces of builds that did not succeed
   * or fail — what a crash left half-made — plus cache snapshots that are no cache's head
   * and stale artifact temp files.
   * Lineage heads are never touched, so a crash between a build's end and its promotion
   * leaves the previous head in place. A workspace that cannot be removed is logged and
   * left: start-up never fails on one.
   */
  recover(): Promise<{ interrupted: number; workspacesRemoved: number; workspacesFailed: number }>;
}

const scopeOf = (build: Pick<Build, 'repo' | 'definition'>) => {
  const [owner = '', repo = ''] = build.repo.split('/');
  return { owner, repo, definition: build.definition };
};

/**
 * Creates the retention service. `artifactGraceMs`: an unreferenced artifact younger than
 * this is kept (a build may have stored it and not yet recorded it).
 */
export function createRetention(options: {
  store: BuildStore;
  logs: BuildLogs;
  workspaces: Workspaces;
  artifacts: ArtifactStore;
  /** where a build a previous process left running is reported ended */
  reports: Pick<BuildReporter, 'publish'>;
  keepPerBranch: number;
  artifactGraceMs: number;
  /** marks of deleted refs and closed pull requests; without it none are cleaned up */
  deadRefs?: Pick<DeadRefs, 'list' | 'forget'>;
  /** how long a dead ref's lineage heads are kept after its mark, in ms */
  deadRefHeadMs?: number;
  /** the git mirrors' `refs/autobuilder/<sha>`; without it the mirrors are left alone */
  mirrors?: MirrorRefs;
  /** the engine's images built from Dockerfiles (`autobuilder/env:*`); without it they are left alone */
  envImages?: Required<Pick<ContainerRunner, 'listImages' | 'removeImage'>>;
  /** persistent caches of builds; without them none are collected */
  caches?: Caches;
  log: Logger;
  now?: () => number;
}): Retention {
  const { store, logs, workspaces, artifacts, reports, log } = options;
  const now = options.now ?? Date.now;

  async function isHead(build: { id: string; repo: string; ref: string; definition: string }): Promise<boolean> {
    try {
      return (await workspaces.head(scopeOf(build), toLineageBranch(build.ref))) === build.id;
    } catch {
      return false;
    }
  }

  /**
   * Removes the lineage heads and workspaces of refs marked dead long enough ago; returns
   * the keys (`repo\nref`) of the refs it cleaned up.
   */
  async function cleanDeadRefs(report: RetentionReport): Promise<Set<string>> {
    const cleaned = new Set<string>();
    if (options.deadRefs === undefined) return cleaned;
    const cutoff = now() - (options.deadRefHeadMs ?? 0);
    for (const dead of options.deadRefs.list()) {
      if (Date.parse(dead.deadAt) > cutoff) continue;
      const builds = listAll(store, { repo: dead.repo, ref: dead.ref });
      // queued after the mark: the branch was pushed again or the pull request reopened
      if (builds.some((b) => b.queuedAt > dead.deadAt)) {
        options.deadRefs.forget(dead.repo, dead.ref);
        continue;
      }
      if (builds.some((b) => !isTerminal(b.state))) continue;
      try {
        const branch = toLineageBranch(dead.ref);
        const scopes = new Map(builds.map((b) => [b.definition, scopeOf(b)]));
        for (const scope of scopes.values()) await workspaces.removeHead(scope, branch);
        for (const build of builds) await workspaces.remove(scopeOf(build), build.id);
        options.deadRefs.forget(dead.repo, dead.ref);
        report.deadRefsCleaned++;
        cleaned.add(`${dead.repo}\n${dead.ref}`);
        log.info({ repo: dead.repo, ref: dead.ref, deadAt: dead.deadAt, workspaces: builds.length }, 'lineage heads of a dead ref removed');
      } catch (err) {
        log.warn({ err, repo: dead.repo, ref: dead.ref }, 'could not remove the lineage heads of a dead ref; tried again next pass');
        report.failures++;
      }
    }
    return cleaned;
  }

  /**
   * Deletes each mirror's `refs/autobuilder/<sha>` that no build record needs (see `run`).
   * A commit fetched for a request not yet recorded may lose its ref here; its objects stay
   * until `git gc` prunes unreachable ones (two weeks by default), so that build still checks
   * it out, and a later one fetches it again.
   */
  async function cleanMirrors(report: RetentionReport, deadRefs: ReadonlySet<string>): Promise<void> {
    if (options.mirrors === undefined) return;
    for (const { owner, repo } of await options.mirrors.repositories()) {
      try {
        const fullName = `${owner}/${repo}`;
        const needed = new Set(
          listAll(store, { repo: fullName })
            .filter((b) => !deadRefs.has(`${fullName}\n${b.ref}`))
            .map((b) => b.sha),
        );
        const unneeded = (await options.mirrors.fetched(owner, repo)).filter((sha) => !needed.has(sha));
        await options.mirrors.remove(owner, repo, unneeded);
        report.mirrorRefsDeleted += unneeded.length;
      } catch (err) {
        log.warn({ err, owner, repo }, 'could not delete the unneeded refs of a git mirror; tried again next pass');
        report.failures++;
      }
    }
  }

  /** Removes caches unused for `deadRefHeadMs` and cache snapshots left behind (see `run`). */
  async function collectCaches(report: RetentionReport): Promise<void> {
    if (options.caches === undefined) return;
    try {
      const running = new Set(listAll(store, { state: 'running' }).map((b) => b.id));
      const collected = await options.caches.collect({ usedBefore: now() - (options.deadRefHeadMs ?? 0), running });
      report.cacheScopesDeleted += collected.scopesRemoved;
      report.cacheSnapshotsDeleted += collected.snapshotsRemoved;
    } catch (err) {
      log.warn({ err }, 'could not collect the persistent caches; tried again next pass');
      report.failures++;
    }
  }

  /**
   * Takes every `autobuilder/env:<hash>` tag off its image when no build left in the store
   * uses it (its cache input `image` is neither the tag nor the image's id) and the image is
   * older than the artifact grace period (a build may have made it and not recorded it yet);
   * the engine removes an image with its last tag, and keeps one a container uses.
   */
  async function collectEnvImages(report: RetentionReport): Promise<void> {
    if (options.envImages === undefined) return;
    try {
      const used = new Set(listAll(store).flatMap((b) => (b.cacheInputs === null ? [] : [b.cacheInputs.image])));
      const cutoff = now() - options.artifactGraceMs;
      for (const image of await options.envImages.listImages(ENV_IMAGE_REPOSITORY)) {
        if (used.has(image.id) || image.createdMs > cutoff) continue;
        for (const tag of image.tags.filter((t) => isEnvImageTag(t) && !used.has(t))) {
          if (await options.envImages.removeImage(tag)) report.envImagesRemoved++;
        }
      }
    } catch (err) {
      log.warn({ err }, 'could not remove unused env images; tried again next pass');
      report.failures++;
    }
  }

  return {
    async run() {
      const report: RetentionReport = {
        buildsDeleted: 0,
        workspacesDeleted: 0,
        artifactsDeleted: 0,
        bytesFreed: 0,
        failures: 0,
        deadRefsCleaned: 0,
        mirrorRefsDeleted: 0,
        envImagesRemoved: 0,
        cacheScopesDeleted: 0,
        cacheSnapshotsDeleted: 0,
      };
      const deadRefs = await cleanDeadRefs(report);
      const groups = new Map<string, { id: string; repo: string; ref: string; definition: string; state: string }[]>();
      for (const key of store.listKeys()) {
        const group = `${key.repo}\n${key.ref}\n${key.definition}`;
        const list = groups.get(group) ?? [];
        list.push(key);
        groups.set(group, list);
      }
      for (const list of groups.values()) {
        // listKeys is oldest first: everything before the last N is a candidate
        for (const candidate of list.slice(0, Math.max(0, list.length - options.keepPerBranch))) {
          if (!isTerminal(candidate.state as BuildState) || (await isHead(candidate))) continue;
          try {
            // the record goes last: a build whose workspace cannot go is tried again next pass
            await workspaces.remove(scopeOf(candidate), candidate.id);
            await logs.remove(candidate.id);
            store.delete(candidate.id);
          } catch (err) {
            log.warn({ err, buildId: candidate.id }, 'could not delete a build; kept for the next pass');
            report.failures++;
            continue;
          }
          report.buildsDeleted++;
          report.workspacesDeleted++;
        }
      }
      const referenced = store.referencedDigests();
      const cutoff = now() - options.artifactGraceMs;
      for await (const artifact of artifacts.list()) {
        if (referenced.has(artifact.digest) || artifact.mtimeMs > cutoff) continue;
        try {
          await artifacts.remove(artifact.digest);
        } catch (err) {
          log.warn({ err, digest: artifact.digest }, 'could not delete an artifact; kept for the next pass');
          report.failures++;
          continue;
        }
        report.artifactsDeleted++;
        report.bytesFreed += artifact.size;
      }
      await artifacts.removeStaleTemp(cutoff);
      await cleanMirrors(report, deadRefs);
      await collectEnvImages(report);
      await collectCaches(report);
      // delivery ids are kept for dedupe well past GitHub's 3 days of redeliveries
      store.pruneDeliveries(new Date(now() - DELIVERY_RETENTION_DAYS * 86_400_000).toISOString());
      log.info(report, 'retention pass done');
      return report;
    },

    async recover() {
      let interrupted = 0;
      // queued builds are resumed by the coordinator; a running one lost its process
      for (const build of listAll(store, { state: 'running' })) {
        Object.assign(build, { state: 'error', finishedAt: new Date(now()).toISOString(), description: 'autobuilder restarted while the build was running' });
        store.update(build);
        await reports.publish(build);
        interrupted++;
      }
      let workspacesRemoved = 0;
      let workspacesFailed = 0;
      try {
        for await (const { scope, buildId } of workspaces.list()) {
          const build = store.get(buildId);
          const keep = build !== null && (build.state === 'success' || build.state === 'failure');
          if (keep) continue;
          if (build !== null && (await isHead(build))) continue;
          try {
            await workspaces.remove(scope, buildId);
            workspacesRemoved++;
          } catch (err) {
            log.error({ err, buildId, scope }, 'could not remove a workspace an earlier process left; skipped');
            workspacesFailed++;
          }
        }
      } catch (err) {
        log.error({ err }, 'could not list the workspaces; leftovers of an earlier process stay');
        workspacesFailed++;
      }
      if (options.caches !== undefined) {
        try {
          workspacesRemoved += await options.caches.recover();
        } catch (err) {
          log.error({ err }, 'could not remove the cache snapshots an earlier process left; retention tries again');
          workspacesFailed++;
        }
      }
      await artifacts.removeStaleTemp(now() - options.artifactGraceMs);
      if (interrupted + workspacesRemoved + workspacesFailed > 0)
        log.warn({ interrupted, workspacesRemoved, workspacesFailed }, 'cleaned up after an earlier process');
      return { interrupted, workspacesRemoved, workspacesFailed };
    },
  };
}
