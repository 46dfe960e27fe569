import type { QueueInfo } from '../builds/scheduler.js';

/**
 * Why each waiting build waits, in words for the monitor, keyed by build id, derived from
 * the scheduler's queue (the one `GET /api/queue` shows, so the two never disagree): it is
 * still resolving its inputs, waiting for an identical build it joined, or waiting for a
 * free slot (with its place in line, and whether the backlog was full when it came).
 */
export function toWaitingReasons(queue: QueueInfo): Record<string, string> {
  const reasons: Record<string, string> = {};
  const running = queue.running.length;
  const free = Math.max(0, queue.concurrency - running);
  for (const id of queue.deciding) reasons[id] = 'resolving its inputs (commit tree, image)';
  for (const w of queue.waiting) {
    if (w.waitsFor === 'build') {
      reasons[w.buildId] = `waiting for build ${w.joined ?? '?'}, which has the same inputs`;
      continue;
    }
    const place = w.position ?? 1;
    const why = queue.stopping
      ? 'autobuilder is stopping'
      : queue.blocked !== null
        ? queue.blocked
        : free === 0
          ? `waiting for a free slot: ${running} of ${queue.concurrency} running, ${ordinal(place)} in line`
          : place <= free
            ? 'starting'
            : `waiting for a free slot: ${ordinal(place - free)} in line`;
    reasons[w.buildId] = (w.backlogNote === null ? '' : `${w.backlogNote}; `) + why;
  }
  return reasons;
}

function ordinal(n: number): string {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${suffix}`;
}
