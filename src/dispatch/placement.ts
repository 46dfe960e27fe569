import type { Build } from '../builds/build.js';
import type { ExecutionJob } from '../builds/build-execution.js';
import type { WorkerRegistry } from './worker-registry.js';

/**
 * Waits for a worker that may take `job` and assigns it there; null when `signal` aborted
 * first. `excluded` workers are passed over (a retry's lost worker); `report` gets the
 * waiting reason as the build's description whenever it changes.
 */
export type Placement = (
  job: ExecutionJob,
  excluded: ReadonlySet<string>,
  signal: AbortSignal,
  report: (changes: Partial<Build>) => void,
) => Promise<string | null>;

/**
 * Creates the placement of builds on workers: a live, not draining worker with every label
 * of the definition's `runs-on` and a free slot. The worker holding the build's lineage head
 * is taken first, and waited for up to `affinityWaitMs` while it is busy; otherwise the least
 * loaded (assigned / capacity), then by id. The check and the assignment happen in one tick,
 * so two builds never take one last slot. Waiting reasons: no live worker (with those
 * labels), the lineage worker busy, all matching workers busy.
 */
export function createPlacement(options: {
  registry: WorkerRegistry;
  affinityWaitMs: number;
  lineageWorker: (job: ExecutionJob) => string | null;
  isClosed: () => boolean;
  now: () => number;
}): Placement {
  const { registry, now } = options;
  /** Resolves on the next registry change, after `ms`, or when `signal` aborts. */
  function nextChange(signal: AbortSignal, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        stop();
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      const stop = registry.onChange(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /**
   * Waits for a worker that may take the build and assigns it there (in the same tick as the
   * check, so two builds never take one last slot). Null when `signal` aborted first.
   */
  return async function place(
    job: ExecutionJob,
    excluded: ReadonlySet<string>,
    signal: AbortSignal,
    report: (changes: Partial<Build>) => void,
  ): Promise<string | null> {
    const labels = job.definition.runsOn;
    const preferred = options.lineageWorker(job);
    const since = now();
    let said = '';
    while (!signal.aborted && !options.isClosed()) {
      const candidates = registry.list().filter((w) => w.live && !w.draining && !excluded.has(w.id) && labels.every((l) => w.labels.includes(l)));
      const preferredLive = preferred !== null && candidates.some((w) => w.id === preferred);
      if (preferredLive && registry.freeSlots(preferred) > 0) {
        registry.assign(preferred, job.build.id);
        return preferred;
      }
      const holdForAffinity = preferredLive && now() - since < options.affinityWaitMs;
      if (!holdForAffinity) {
        const free = candidates
          .filter((w) => registry.freeSlots(w.id) > 0)
          .sort((a, b) => a.assigned.length / Math.max(1, a.capacity) - b.assigned.length / Math.max(1, b.capacity) || a.id.localeCompare(b.id));
        const chosen = free[0];
        if (chosen !== undefined) {
          registry.assign(chosen.id, job.build.id);
          return chosen.id;
        }
      }
      const reason =
        candidates.length === 0
          ? labels.length > 0
            ? `no live worker has the labels ${labels.join(', ')}`
            : 'no live worker'
          : holdForAffinity
            ? `worker ${String(preferred)} holds its workspace and is busy`
            : `all ${candidates.length} matching workers are busy`;
      if (reason !== said) {
        said = reason;
        report({ description: `Waiting for a worker: ${reason}` });
      }
      await nextChange(signal, holdForAffinity ? Math.max(50, options.affinityWaitMs - (now() - since)) : 1000);
    }
    return null;
  };
}
