/** A commit status waiting to be posted. `nextAttemptAt` is ms since the epoch. */
export interface OutboxEntry {
  id: number;
  buildId: string;
  owner: string;
  repo: string;
  sha: string;
  context: string;
  state: 'pending' | 'success' | 'failure' | 'error';
  targetUrl: string;
  description: string;
  attempts: number;
  nextAttemptAt: number;
}

/** What {@link StatusOutbox.enqueue} takes: an entry without its bookkeeping. */
export type NewOutboxEntry = Omit<OutboxEntry, 'id' | 'attempts' | 'nextAttemptAt'>;

/**
 * The durable outbox of commit statuses. Contract: an entry is stored when `enqueue`
 * returns (every read sees it; how soon it is on disk is the driver's to say, see
 * `createSqliteStatusOutbox`); only the newest unsent entry per repository + sha + context
 * is kept (GitHub shows the latest status of a context, so an older one never needs posting,
 * and must never be posted after a newer one); entries leave only by `remove` (sent, or
 * refused for good).
 */
export interface StatusOutbox {
  /** Stores an entry, dropping older unsent ones of the same repository, sha and context; returns its id. */
  enqueue(entry: NewOutboxEntry, now: number): number;
  /** Entries due at `now`, oldest first. */
  due(now: number, limit: number): OutboxEntry[];
  /** Whether entry `id` is still waiting (not superseded or removed). */
  has(id: number): boolean;
  remove(id: number): void;
  /** Records a failed attempt and when to try again. */
  retryAt(id: number, nextAttemptAt: number, error: string): void;
  /** When the earliest waiting entry is due, or null when none waits. */
  nextDueAt(): number | null;
  /** Number of waiting entries. */
  size(): number;
  /** Resolves once every change made before the call is on disk; rejects with the error of a commit that failed. */
  flush(): Promise<void>;
  /** Commits what is not yet on disk, then closes; throws the error of a commit that failed. */
  close(): void;
}
