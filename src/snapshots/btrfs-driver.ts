import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError, toMessage } from '../errors.js';
import { mustNotExist, run } from './exec.js';
import type { QuotaUsage, SnapshotDriver, WorkspaceQuota } from './snapshot-driver.js';

/** Magic number of a Btrfs filesystem in statfs(2) `f_type` (linux/magic.h BTRFS_SUPER_MAGIC). */
export const BTRFS_SUPER_MAGIC = 0x9123683e;

/** A subvolume's root directory has inode number 256 (BTRFS_FIRST_FREE_OBJECTID); no other directory has. */
const SUBVOLUME_ROOT_INODE = 256;

/**
 * Every subvolume below `root` (not `root` itself), parents before children. Walks the tree
 * without following symlinks: a directory entry whose inode is 256 is the root of a nested
 * subvolume (a subvolume's own inodes start at 257).
 * @throws the fs error of a directory that cannot be read (e.g. ENAMETOOLONG)
 */
async function findNestedSubvolumes(root: string): Promise<string[]> {
  const found: string[] = [];
  const pending = [root];
  for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      // d_type: a symlink to a directory is not a directory here, so the walk stays inside
      if (!entry.isDirectory()) continue;
      const path = join(dir, entry.name);
      if ((await lstat(path)).ino === SUBVOLUME_ROOT_INODE) found.push(path);
      pending.push(path);
    }
  }
  // a child is found after its parent and its path is longer: sort so that parents come first
  return found.sort((a, b) => a.length - b.length);
}

/**
 * Parses the row of the subvolume's own qgroup (`0/<id>`) from
 * `btrfs qgroup show -r -e --raw -f <path>`: columns qgroupid, referenced, exclusive, max
 * referenced, max exclusive (each max `none` when unlimited), path.
 * @throws AppError `SNAPSHOT_FAILED` when no such row is found
 */
export function toQuotaUsage(output: string, path: string): QuotaUsage {
  const limitOf = (value: string | undefined) => (value !== undefined && /^\d+$/.test(value) ? Number(value) : null);
  for (const line of output.split('\n')) {
    const [id, referenced, exclusive, maxReferenced, maxExclusive] = line.trim().split(/\s+/);
    if (id === undefined || !/^0\/\d+$/.test(id) || exclusive === undefined || !/^\d+$/.test(exclusive)) continue;
    if (referenced === undefined || !/^\d+$/.test(referenced)) continue;
    return {
      exclusiveBytes: Number(exclusive),
      limitBytes: limitOf(maxExclusive),
      referencedBytes: Number(referenced),
      referencedLimitBytes: limitOf(maxReferenced),
    };
  }
  throw new AppError('SNAPSHOT_FAILED', `no qgroup of ${path} in: ${output.trim().slice(0, 300)}`);
}

/**
 * Workspace quotas over Btrfs qgroups: each workspace subvolume has its level-0 qgroup, and
 * the limit is on its *exclusive* bytes (`btrfs qgroup limit -e`), so a snapshot of a big
 * lineage head starts near zero and only what the build writes (new or rewritten extents)
 * counts; a limit on *referenced* bytes would count the inherited tree too. A snapshot
 * inherits its source's limit, so every workspace gets its own set (or lifted). A persistent
 * cache is bounded on its *referenced* bytes instead (its whole size, see caches.ts). Stale
 * qgroups of deleted subvolumes are dropped by the kernel (6.x) on its own.
 */
function createBtrfsQuota(btrfs: string): WorkspaceQuota {
  return {
    async enable(dir) {
      // a no-op when quotas are on already; when it turns them on, the kernel starts a rescan
      // (these two take no `--`; `dir` is the absolute workspaces root, never user input)
      await run(btrfs, ['quota', 'enable', dir]);
      await run(btrfs, ['quota', 'rescan', '-W', dir]);
    },
    async limit(path, bytes, kind = 'exclusive') {
      // without -e, `qgroup limit` bounds the referenced bytes
      await run(btrfs, ['qgroup', 'limit', ...(kind === 'exclusive' ? ['-e'] : []), bytes === null ? 'none' : String(bytes), '--', path]);
    },
    async usage(path) {
      // --sync commits the transaction first: accounting is only updated at commit
      return toQuotaUsage(await run(btrfs, ['qgroup', 'show', '-r', '-e', '--raw', '--sync', '-f', '--', path]), path);
    },
  };
}

/**
 * Snapshot driver over Btrfs subvolumes (`btrfs subvolume create|snapshot|delete`): a
 * snapshot is copy-on-write and takes milliseconds whatever the tree's size. Needs root
 * (or CAP_SYS_ADMIN) and a data directory on Btrfs.
 *
 * `remove` also deletes what a build may have made inside its workspace: creating a
 * subvolume or a snapshot needs only write access to a directory (an unprivileged ioctl that
 * Docker's default seccomp profile allows), and marking a subvolume read-only only its
 * ownership. `btrfs subvolume delete` refuses a subvolume that holds another (ENOTEMPTY) and
 * the kernel has no recursive delete (btrfs-progs 6.2 of Debian bookworm has no
 * `--recursive` either), so on failure the driver finds the nested subvolumes, clears their
 * read-only flag and deletes them deepest first, then tries again.
 */
export function createBtrfsDriver(options: { btrfs?: string } = {}): SnapshotDriver {
  const btrfs = options.btrfs ?? 'btrfs';

  async function removeOnce(path: string, isSubvolume: boolean): Promise<void> {
    if (isSubvolume) await run(btrfs, ['subvolume', 'delete', '--', path]);
    else await rm(path, { recursive: true, force: true });
  }

  async function removeNested(path: string, isSubvolume: boolean): Promise<void> {
    const nested = await findNestedSubvolumes(path);
    // a child cannot be unlinked from a read-only parent (EROFS)
    for (const subvolume of isSubvolume ? [path, ...nested] : nested) {
      await run(btrfs, ['property', 'set', '-f', '-ts', '--', subvolume, 'ro', 'false']);
    }
    for (const subvolume of nested.reverse()) await run(btrfs, ['subvolume', 'delete', '--', subvolume]);
  }

  return {
    name: 'btrfs',
    quota: createBtrfsQuota(btrfs),
    async create(path) {
      await mustNotExist(path);
      await run(btrfs, ['subvolume', 'create', '--', path]);
    },
    async snapshot(source, target) {
      // `btrfs subvolume snapshot` into an existing directory silently makes target/<name>
      await mustNotExist(target);
      await run(btrfs, ['subvolume', 'snapshot', '--', source, target]);
    },
    async remove(path) {
      let stat;
      try {
        stat = await lstat(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw err;
      }
      // anything but a subvolume root is a plain directory, e.g. left by the copy driver
      const isSubvolume = stat.isDirectory() && stat.ino === SUBVOLUME_ROOT_INODE;
      try {
        await removeOnce(path, isSubvolume);
        return;
      } catch (first) {
        try {
          await removeNested(path, isSubvolume);
          await removeOnce(path, isSubvolume);
        } catch (second) {
          throw new AppError('SNAPSHOT_FAILED', `cannot remove workspace ${path}: ${toMessage(second)}`, { cause: first });
        }
      }
    },
  };
}
