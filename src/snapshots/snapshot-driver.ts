/**
 * A snapshot driver makes build workspaces: writable directory trees that are either new
 * and empty or a point-in-time copy of another workspace.
 *
 * Contract:
 * - `create(path)` makes a new, empty, writable workspace at `path`. The parent directory
 *   must exist; `path` must not. Throws AppError `SNAPSHOT_FAILED` otherwise.
 * - `snapshot(source, target)` makes `target` a writable copy of `source` as it is now.
 *   Later writes to either side never show in the other. `target` must not exist.
 * - `remove(path)` deletes a workspace made by this driver, with everything in it.
 *   Idempotent: a missing `path` is not an error.
 * - Drivers never follow a path out of what they were given and never run a shell:
 *   every command gets its arguments as an array.
 * - They do not decide lineage (which workspace is the parent of which): see `workspaces.ts`.
 */
export interface SnapshotDriver {
  /** `btrfs` (subvolume snapshots, O(1)) or `copy` (a full copy, any filesystem). */
  readonly name: 'btrfs' | 'copy';
  create(path: string): Promise<void>;
  snapshot(source: string, target: string): Promise<void>;
  remove(path: string): Promise<void>;
}
