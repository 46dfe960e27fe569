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
 * - `quota` is optional: only a driver that can bound what a workspace writes has it (the
 *   copy driver cannot, so its builds run without a disk quota).
 */
export interface SnapshotDriver {
  /** `btrfs` (subvolume snapshots, O(1)) or `copy` (a full copy, any filesystem). */
  readonly name: 'btrfs' | 'copy';
  create(path: string): Promise<void>;
  snapshot(source: string, target: string): Promise<void>;
  remove(path: string): Promise<void>;
  /** Disk quotas of workspaces; absent when the driver cannot enforce them. */
  readonly quota?: WorkspaceQuota;
}

/** How much a workspace holds (of its own, and in all) and how much it may, in bytes. */
export interface QuotaUsage {
  /** bytes only this workspace references (what it added over the snapshot it was made from) */
  exclusiveBytes: number;
  /** the limit on `exclusiveBytes`; null when none is set */
  limitBytes: number | null;
  /** every byte the workspace references, shared with other snapshots or not: its whole size */
  referencedBytes: number;
  /** the limit on `referencedBytes`; null when none is set */
  referencedLimitBytes: number | null;
}

/** What a quota limit bounds: the bytes a workspace adds over its source, or its whole size. */
export type QuotaKind = 'exclusive' | 'referenced';

/**
 * Per-workspace disk quotas.
 *
 * Contract:
 * - `enable(dir)` turns quota accounting on for the filesystem holding `dir` and resolves
 *   once the numbers are consistent. Idempotent: cheap when it is already on.
 * - `limit(path, bytes)` bounds what the workspace at `path` (made by `create` or `snapshot`)
 *   may add: writes that would take its exclusive bytes past `bytes` fail with EDQUOT.
 *   Data it shares with the workspace it was snapshotted from does not count. `null` lifts
 *   the limit (a snapshot may inherit its source's). With `kind` `referenced` the limit is on
 *   the workspace's whole size instead, shared data included (a persistent cache's cap).
 * - `usage(path)` reads the current numbers after flushing pending writes.
 * - All three throw AppError `SNAPSHOT_FAILED` when the filesystem refuses.
 */
export interface WorkspaceQuota {
  enable(dir: string): Promise<void>;
  limit(path: string, bytes: number | null, kind?: QuotaKind): Promise<void>;
  usage(path: string): Promise<QuotaUsage>;
}
