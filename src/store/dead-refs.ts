/** A branch, tag or pull request ref that GitHub said is gone. `deadAt`: ISO 8601. */
export interface DeadRef {
  /** `owner/name` */
  repo: string;
  /** full ref as builds carry it: `refs/heads/x`, `refs/tags/v1`, `refs/pull/7/head` */
  ref: string;
  deadAt: string;
}

/**
 * Refs that were deleted (a push with `deleted: true`) or closed (a pull request), so that
 * retention can drop their lineage heads and mirror refs once they have been gone a while.
 * Contract: `mark` is idempotent and keeps the first time a ref was marked (a redelivery
 * does not push the deadline back); a mark stays until `forget`, which retention calls once
 * it has cleaned the ref up or seen it built again. Reads see every change made before them.
 */
export interface DeadRefs {
  mark(ref: DeadRef): void;
  /** Every mark, oldest first. */
  list(): DeadRef[];
  forget(repo: string, ref: string): void;
  /** Commits what is not yet on disk, then closes; throws the error of a commit that failed. */
  close(): void;
}
