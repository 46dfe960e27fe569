import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readlink, rename, symlink, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError, toMessage } from '../errors.js';
import { createSerializeByKey } from '../serialize-by-key.js';
import type { SnapshotDriver } from './snapshot-driver.js';

/**
 * Encodes any string as one safe path segment: no `/`, no `.` or `..`, no NUL, reversible.
 * @throws AppError `UNSAFE_INPUT` for an empty string
 */
export function toPathSegment(value: string): string {
  if (value === '') throw new AppError('UNSAFE_INPUT', 'empty path segment', { status: 400 });
  return encodeURIComponent(value).replace(/\./g, '%2E').replace(/\*/g, '%2A');
}

/** Which lineage a workspace belongs to: repository + build definition (the branch is apart). */
export interface LineageScope {
  owner: string;
  repo: string;
  definition: string;
}

/** A workspace's disk quota: enforced with its limit in bytes, or why not. */
export type DiskQuota = { enforced: true; bytes: number } | { enforced: false; reason: string };

/** A prepared workspace: where it is and what it was made from. */
export interface PreparedWorkspace {
  path: string;
  /** the build whose workspace this is a snapshot of; null for a fresh workspace */
  parentBuildId: string | null;
  diskQuota: DiskQuota;
}

/**
 * How close to its limit a workspace must be for a failed build to count as over its quota:
 * a write that hits EDQUOT leaves the usage within a few KiB of the limit (measured: 16 KiB
 * under a 16 MiB limit after `dd` ran into it), so 1 MiB (at most 1/16 of the limit) is slack.
 */
const quotaSlack = (limitBytes: number) => Math.min(1024 * 1024, Math.floor(limitBytes / 16));

/** Workspaces grouped in lineages, with the last green workspace of each branch as its head. */
export interface Workspaces {
  /**
   * Makes the workspace of build `buildId`: a snapshot of the head of `branch`, else of
   * `fallbackBranch` (the default branch), else a fresh one; always fresh when `incremental`
   * is false. With `diskQuotaBytes` the workspace may add at most that many bytes to what it
   * shares with its source (the checkout included); a driver that cannot enforce it, or a
   * limit the filesystem refuses, leaves the build without one (`diskQuota.enforced` false
   * and why), it never fails the build.
   */
  prepare(input: {
    scope: LineageScope;
    branch: string;
    fallbackBranch: string | null;
    buildId: string;
    incremental: boolean;
    diskQuotaBytes?: number | null;
  }): Promise<PreparedWorkspace>;
  /**
   * Turns on disk quotas for the workspaces' filesystem when the driver can enforce them
   * (waits for the first accounting scan); resolves with whether it can.
   * @throws AppError `SNAPSHOT_FAILED` when the filesystem refuses
   */
  enableQuotas(): Promise<boolean>;
  /**
   * True when a workspace with an enforced quota has used it up (within a little slack):
   * what tells a build that ran out of its quota from one that failed on its own.
   * @throws AppError `SNAPSHOT_FAILED` when the usage cannot be read
   */
  isOverQuota(workspace: PreparedWorkspace): Promise<boolean>;
  /**
   * Makes build `buildId`'s workspace the head of `branch`, atomically: a new symlink is
   * renamed over the old one (rename(2)), so a crash leaves either the old head or the new.
   * A head only moves forward: when the current head sorts after `buildId` (a newer build
   * finished first) nothing changes and the result is false.
   */
  promote(input: { scope: LineageScope; branch: string; buildId: string }): Promise<boolean>;
  /** The build id at the head of `branch`, or null when the branch has no green build yet. */
  head(scope: LineageScope, branch: string): Promise<string | null>;
  /**
   * Removes the head link of `branch` (idempotent), e.g. when the branch was deleted; the
   * workspace it pointed at stays until {@link Workspaces.remove}. Serialised with `promote`.
   */
  removeHead(scope: LineageScope, branch: string): Promise<void>;
  /** Removes build `buildId`'s workspace (idempotent). */
  remove(scope: LineageScope, buildId: string): Promise<void>;
  /** Every workspace on disk, with its lineage scope and build id. */
  list(): AsyncGenerator<{ scope: LineageScope; buildId: string }>;
}

/**
 * Creates the lineage manager over `root` (`<dataDir>/workspaces`). Layout:
 * `<root>/<owner>/<repo>/<definition>/<build-id>` for workspaces and
 * `<root>/<owner>/<repo>/<definition>/heads/<branch>` → `../<build-id>` for heads, every
 * segment encoded by {@link toPathSegment}. Build ids must sort by age as strings (see
 * `createBuildId`). Promotions of one head are serialised within the process.
 */
export function createWorkspaces(options: { root: string; driver: SnapshotDriver }): Workspaces {
  const { root, driver } = options;
  const serial = createSerializeByKey();
  const scopeDir = (s: LineageScope) => join(root, toPathSegment(s.owner), toPathSegment(s.repo), toPathSegment(s.definition));
  const headLink = (s: LineageScope, branch: string) => join(scopeDir(s), 'heads', toPathSegment(branch));

  async function head(scope: LineageScope, branch: string): Promise<string | null> {
    try {
      const target = await readlink(headLink(scope, branch));
      return decodeURIComponent(target.replace(/^\.\.\//, ''));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async function limit(path: string, bytes: number | null): Promise<DiskQuota> {
    const { quota } = driver;
    if (quota === undefined) return { enforced: false, reason: `the ${driver.name} snapshot driver cannot enforce disk quotas` };
    if (bytes === null) {
      // a snapshot inherits its source's limit; with quotas off there is none to lift
      await quota.limit(path, null).catch(() => undefined);
      return { enforced: false, reason: 'no disk quota is configured' };
    }
    try {
      await quota.limit(path, bytes);
      return { enforced: true, bytes };
    } catch (err) {
      return { enforced: false, reason: toMessage(err) };
    }
  }

  return {
    head,
    async prepare({ scope, branch, fallbackBranch, buildId, incremental, diskQuotaBytes }) {
      const dir = scopeDir(scope);
      await mkdir(dir, { recursive: true });
      const path = join(dir, toPathSegment(buildId));
      let parentBuildId: string | null = null;
      if (incremental) {
        parentBuildId = await head(scope, branch);
        if (parentBuildId === null && fallbackBranch !== null && fallbackBranch !== branch) {
          parentBuildId = await head(scope, fallbackBranch);
        }
      }
      if (parentBuildId === null) await driver.create(path);
      else await driver.snapshot(join(dir, toPathSegment(parentBuildId)), path);
      return { path, parentBuildId, diskQuota: await limit(path, diskQuotaBytes ?? null) };
    },
    async enableQuotas() {
      if (driver.quota === undefined) return false;
      await mkdir(root, { recursive: true });
      await driver.quota.enable(root);
      return true;
    },
    async isOverQuota(workspace) {
      if (!workspace.diskQuota.enforced || driver.quota === undefined) return false;
      const { exclusiveBytes, limitBytes } = await driver.quota.usage(workspace.path);
      return limitBytes !== null && exclusiveBytes >= limitBytes - quotaSlack(limitBytes);
    },
    promote({ scope, branch, buildId }) {
      const link = headLink(scope, branch);
      const task = async (): Promise<boolean> => {
        const current = await head(scope, branch);
        if (current !== null && current > buildId) return false;
        await mkdir(join(scopeDir(scope), 'heads'), { recursive: true });
        const temp = `${link}.${randomBytes(6).toString('hex')}.tmp`;
        await symlink(`../${toPathSegment(buildId)}`, temp);
        try {
          await rename(temp, link);
        } catch (err) {
          await unlink(temp).catch(() => undefined);
          throw err;
        }
        return true;
      };
      return serial(link, task);
    },
    removeHead(scope, branch) {
      const link = headLink(scope, branch);
      return serial(link, () => unlink(link).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err))));
    },
    async remove(scope, buildId) {
      await driver.remove(join(scopeDir(scope), toPathSegment(buildId)));
    },
    async *list() {
      const entries = async (dir: string) =>
        (await readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err)))).filter((e) =>
          e.isDirectory(),
        );
      for (const owner of await entries(root)) {
        for (const repo of await entries(join(root, owner.name))) {
          for (const definition of await entries(join(root, owner.name, repo.name))) {
            const scope = { owner: decodeURIComponent(owner.name), repo: decodeURIComponent(repo.name), definition: decodeURIComponent(definition.name) };
            for (const workspace of await entries(join(root, owner.name, repo.name, definition.name))) {
              if (workspace.name !== 'heads') yield { scope, buildId: decodeURIComponent(workspace.name) };
            }
          }
        }
      }
    },
  };
}
