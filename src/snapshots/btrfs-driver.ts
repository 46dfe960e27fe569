import { lstat, rm } from 'node:fs/promises';
import { mustNotExist, run } from './exec.js';
import type { SnapshotDriver } from './snapshot-driver.js';

/** Magic number of a Btrfs filesystem in statfs(2) `f_type` (linux/magic.h BTRFS_SUPER_MAGIC). */
export const BTRFS_SUPER_MAGIC = 0x9123683e;

/**
 * Snapshot driver over Btrfs subvolumes (`btrfs subvolume create|snapshot|delete`): a
 * snapshot is copy-on-write and takes milliseconds whatever the tree's size. Needs root
 * (or CAP_SYS_ADMIN) and a data directory on Btrfs.
 */
export function createBtrfsDriver(options: { btrfs?: string } = {}): SnapshotDriver {
  const btrfs = options.btrfs ?? 'btrfs';
  return {
    name: 'btrfs',
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
      // A subvolume's root directory has inode number 256 (BTRFS_FIRST_FREE_OBJECTID);
      // anything else is a plain directory, e.g. left by the copy driver.
      if (stat.isDirectory() && stat.ino === 256) {
        await run(btrfs, ['subvolume', 'delete', '--', path]);
      } else {
        await rm(path, { recursive: true, force: true });
      }
    },
  };
}
