import { mkdir, rm } from 'node:fs/promises';
import { AppError } from '../errors.js';
import { mustNotExist, run } from './exec.js';
import type { SnapshotDriver } from './snapshot-driver.js';

/**
 * Snapshot driver for any filesystem: a snapshot is a full `cp -a` (reflinks where the
 * filesystem offers them), so it costs time and space in proportion to the tree. It has no
 * `quota`: plain directories cannot bound what a build writes, so builds on it run without a
 * disk quota (their log says so); only the server's free-space reserve protects the volume.
 */
export function createCopyDriver(): SnapshotDriver {
  return {
    name: 'copy',
    async create(path) {
      await mustNotExist(path);
      try {
        await mkdir(path);
      } catch (err) {
        throw new AppError('SNAPSHOT_FAILED', `cannot create workspace ${path}: ${String(err)}`, { cause: err });
      }
    },
    async snapshot(source, target) {
      await mustNotExist(target);
      await run('cp', ['-a', '--reflink=auto', '--', source, target]);
    },
    async remove(path) {
      await rm(path, { recursive: true, force: true });
    },
  };
}
