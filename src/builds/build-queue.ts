/** Priority classes, most urgent first: tags, then the default branch, then the rest. */
export type BuildPriority = 'tag' | 'default-branch' | 'other';

const RANK: Record<BuildPriority, number> = { tag: 0, 'default-branch': 1, other: 2 };

/** A job waiting for a slot. */
export interface QueuedJob {
  buildId: string;
  priority: BuildPriority;
  /** runs the build; the queue counts the slot busy until it settles */
  run(): Promise<void>;
}

/** A waiting job's place: 1-based position in start order. */
export interface QueuePosition {
  buildId: string;
  priority: BuildPriority;
  position: number;
}

/**
 * The build queue: at most `concurrency` jobs run at once; waiting jobs start by priority
 * class, then in arrival order. Waiting jobs can be taken out (cancel, supersede). In-process
 * only: the store is what survives a restart.
 */
export interface BuildQueue {
  add(job: QueuedJob): void;
  /** Takes a waiting job out; false when it is not waiting (running, done, unknown). */
  remove(buildId: string): boolean;
  /** Waiting jobs in the order they will start. */
  waiting(): QueuePosition[];
  /** Number of waiting jobs. */
  readonly size: number;
  /** Number of running jobs. */
  readonly running: number;
  readonly concurrency: number;
  /** Starts no more jobs (shutdown); running ones go on. */
  stop(): void;
  /** Starts waiting jobs that may start now: call it when `canStart` may have turned true. */
  wake(): void;
  /** Resolves when nothing runs and nothing waits (or nothing runs, once stopped). */
  onIdle(): Promise<void>;
}

/**
 * Creates a build queue with `concurrency` slots (≥ 1). While `canStart` answers false no
 * waiting job starts, free slots or not (e.g. the data volume is under its reserve); see
 * {@link BuildQueue.wake}.
 */
export function createBuildQueue(options: { concurrency: number; onError?: (err: unknown, buildId: string) => void; canStart?: () => boolean }): BuildQueue {
  const { concurrency } = options;
  const waiting: (QueuedJob & { seq: number })[] = [];
  let seq = 0;
  let running = 0;
  let stopped = false;
  let idleWaiters: (() => void)[] = [];

  const isIdle = () => running === 0 && (stopped || waiting.length === 0);
  const settleIdle = () => {
    if (!isIdle()) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const resolve of waiters) resolve();
  };
  const pump = () => {
    while (!stopped && running < concurrency && waiting.length > 0 && (options.canStart?.() ?? true)) {
      const job = waiting.shift() as QueuedJob;
      running++;
      void Promise.resolve()
        .then(() => job.run())
        .catch((err: unknown) => options.onError?.(err, job.buildId))
        .finally(() => {
          running--;
          pump();
          settleIdle();
        });
    }
    settleIdle();
  };

  return {
    add(job) {
      const entry = { ...job, seq: seq++ };
      // insert after every job of the same or a more urgent class (stable within a class)
      const at = waiting.findIndex((w) => RANK[w.priority] > RANK[job.priority]);
      if (at === -1) waiting.push(entry);
      else waiting.splice(at, 0, entry);
      pump();
    },
    remove(buildId) {
      const at = waiting.findIndex((w) => w.buildId === buildId);
      if (at === -1) return false;
      waiting.splice(at, 1);
      settleIdle();
      return true;
    },
    waiting: () => waiting.map((w, i) => ({ buildId: w.buildId, priority: w.priority, position: i + 1 })),
    get size() {
      return waiting.length;
    },
    get running() {
      return running;
    },
    concurrency,
    stop() {
      stopped = true;
      settleIdle();
    },
    wake: () => pump(),
    onIdle() {
      return isIdle() ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve));
    },
  };
}
