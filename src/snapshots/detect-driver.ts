import { mkdir, statfs } from 'node:fs/promises';
import { AppError } from '../errors.js';
import { BTRFS_SUPER_MAGIC, createBtrfsDriver } from './btrfs-driver.js';
import { createCopyDriver } from './copy-driver.js';
import type { SnapshotDriver } from './snapshot-driver.js';

/** True when `dir` lives on a Btrfs filesystem (statfs(2) magic number). */
export async function isBtrfs(dir: string): Promise<boolean> {
  const stats = await statfs(dir);
  return stats.type === BTRFS_SUPER_MAGIC;
}

/**
 * Picks the snapshot driver for `dir`: `auto` probes the filesystem (Btrfs → btrfs driver,
 * anything else → copy driver); `btrfs` insists on it.
 * @throws AppError `SNAPSHOT_FAILED` when `btrfs` is asked for and `dir` is not on Btrfs
 */
export async function detectDriver(dir: string, wanted: 'auto' | 'btrfs' | 'copy'): Promise<SnapshotDriver> {
  await mkdir(dir, { recursive: true });
  if (wanted === 'copy') return createCopyDriver();
  const btrfs = await isBtrfs(dir);
  if (btrfs) return createBtrfsDriver();
  if (wanted === 'btrfs') {
    throw new AppError('SNAPSHOT_FAILED', `${dir} is not on Btrfs; run scripts/host-setup.sh or set snapshotDriver: 'copy'`);
  }
  return createCopyDriver();
}
