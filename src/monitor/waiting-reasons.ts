import type { Build } from '../builds/build.js';

/**
 * Why each queued build waits, in words for the monitor, keyed by build id: it is still
 * resolving its inputs, checking the cache, waiting for an identical build in flight, or
 * waiting for a free slot (with its place in line, and whether the backlog was full when it
 * came, as the coordinator wrote in its description). `active` holds the queued and running
 * builds; `concurrency` is how many run at once.
 */
export function toWaitingReasons(active: readonly Build[], concurrency: number): Record<string, string> {
  const running = active.filter((b) => b.state === 'running').length;
  const reasons: Record<string, string> = {};
  const inLine = active
    .filter((b) => b.state === 'queued' && !b.coalesced && b.cacheKey !== null && b.cacheMiss !== null)
    .sort((a, b) => (a.queuedAt === b.queuedAt ? a.id.localeCompare(b.id) : a.queuedAt.localeCompare(b.queuedAt)));
  for (const build of active) {
    if (build.state !== 'queued') continue;
    if (build.coalesced) reasons[build.id] = `waiting for build ${build.sourceBuildId ?? '?'}, which has the same inputs`;
    else if (build.cacheKey === null) reasons[build.id] = 'resolving its inputs (commit tree, image)';
    else if (build.cacheMiss === null) reasons[build.id] = 'checking the build cache';
  }
  inLine.forEach((build, i) => {
    const backlog = /^Queued: (backlog full[^)]*\)?)/.exec(build.description ?? '')?.[1];
    reasons[build.id] =
      (backlog === undefined ? '' : `${backlog}; `) +
      (running >= concurrency
        ? `waiting for a free slot: ${running} of ${concurrency} running, ${ordinal(i + 1)} in line`
        : i < concurrency - running
          ? 'starting'
          : `waiting for a free slot: ${ordinal(i + 1 - (concurrency - running))} in line`);
  });
  return reasons;
}

function ordinal(n: number): string {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${suffix}`;
}
