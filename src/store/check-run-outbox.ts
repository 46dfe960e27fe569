/** A check run's conclusion as GitHub takes it (https://docs.github.com/rest/checks/runs#update-a-check-run). */
export type CheckRunConclusion = 'success' | 'failure' | 'cancelled' | 'timed_out' | 'action_required' | 'neutral' | 'skipped';

/** A check run's status as GitHub takes it; `completed` goes with a conclusion. */
export type CheckRunStatus = 'queued' | 'in_progress' | 'completed';

/**
 * One annotation, GitHub's annotation object (https://docs.github.com/rest/checks/runs#update-a-check-run,
 * `output.annotations[]`): lines are 1-based, columns only when the annotation is on one line.
 */
export interface StoredAnnotation {
  path: string;
  start_line: number;
  end_line: number;
  start_column?: number;
  end_column?: number;
  annotation_level: 'notice' | 'warning' | 'failure';
  message: string;
  title?: string;
  raw_details?: string;
}

/** What a check run should show on GitHub: its status, times (ISO 8601) and output. */
export interface CheckRunState {
  status: CheckRunStatus;
  /** set once the status is `completed` */
  conclusion: CheckRunConclusion | null;
  startedAt: string | null;
  completedAt: string | null;
  /** title, Markdown summary and Markdown text, each within GitHub's limits; null: none yet */
  output: { title: string; summary: string; text: string | null } | null;
}

/**
 * One check run on its way to GitHub: the newest state it should show, what GitHub already
 * has, and the annotations still to send. Times are ms since the epoch.
 */
export interface CheckRunEntry {
  /** unique per check run: the build id, or `config:<owner>/<repo>@<sha>` for a config repository commit */
  key: string;
  owner: string;
  repo: string;
  headSha: string;
  /** the check run's name (a build's context) */
  name: string;
  /** `external_id`: the build id, or the key for a check run of no build */
  externalId: string;
  detailsUrl: string;
  /** buttons the check run carries (`actions`; GitHub takes at most 3) */
  actions: { label: string; description: string; identifier: string }[];
  /** GitHub's id of the check run once it is created; every later change PATCHes this one */
  checkRunId: number | null;
  /** the newest state, to be sent */
  desired: CheckRunState;
  /** bumped by every new `desired` */
  version: number;
  /** the version GitHub has (0: none yet) */
  sentVersion: number;
  /** the status GitHub has (null: none yet): a change of status is sent at once, not coalesced */
  sentStatus: CheckRunStatus | null;
  /** annotations not yet sent: they go with the completed state, at most 50 a request */
  annotations: StoredAnnotation[];
  /** annotations found beyond the cap (said in the summary, never sent) */
  droppedAnnotations: number;
  /** when GitHub last took a change of this check run; null: never */
  lastSentAt: number | null;
  /** failed attempts in a row */
  attempts: number;
  nextAttemptAt: number;
}

/**
 * The durable outbox of check runs. Contract: one entry per key; an entry is stored when
 * `put` returns (every read sees it; how soon it is on disk is the driver's to say, see
 * `createSqliteCheckRunOutbox`); `put` replaces the whole entry (the caller reads, changes,
 * puts: the outbox decides nothing); entries leave only by `remove`. A check run's GitHub id
 * is kept in its entry, so a process that starts again PATCHes the same check run.
 */
export interface CheckRunOutbox {
  /** Stores `entry` in place of the one with its key, if any. */
  put(entry: CheckRunEntry): void;
  /** The entry of `key`, or null; a copy (changing it changes nothing until `put`). */
  get(key: string): CheckRunEntry | null;
  remove(key: string): void;
  /** Entries due at `now`, earliest due first (then by key). */
  due(now: number, limit: number): CheckRunEntry[];
  /** When the earliest entry is due, or null when none waits. */
  nextDueAt(): number | null;
  /** Number of entries. */
  size(): number;
  /** Resolves once every change made before the call is on disk; rejects with the error of a commit that failed. */
  flush(): Promise<void>;
  /** Commits what is not yet on disk, then closes; throws the error of a commit that failed. */
  close(): void;
}
