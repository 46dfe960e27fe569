import { statfs } from 'node:fs/promises';
import { toMessage } from '../errors.js';
import type { Logger } from '../logger.js';

const MiB = 1024 * 1024;

/** Bytes an unprivileged writer may still use on the filesystem holding `dir` (statfs(2) `f_bavail × f_bsize`). */
export async function statfsFreeBytes(dir: string): Promise<number> {
  const stats = await statfs(dir);
  return stats.bavail * stats.bsize;
}

/**
 * The free-space reserve of the data volume: while less than `reserveBytes` is free, new
 * builds must not start (the database, logs and webhook intake need the room); under half
 * of it the volume is critical and running builds must stop (what quotas do not bound, such
 * as a subvolume a build nests in its workspace, still cannot fill it). It reads the free
 * space every `intervalMs` (default 2 s: statfs costs microseconds) and whenever
 * {@link DiskReserve.check} is called, and tells its listeners when the volume goes under
 * or back over the reserve, and when it turns critical.
 */
export interface DiskReserve {
  /** True when the last reading was under the reserve (false before the first one). */
  isLow(): boolean;
  /** True when the last reading was under half the reserve. */
  isCritical(): boolean;
  /**
   * Why builds wait, e.g. "data volume has 812 MiB free, under the 2048 MiB reserve"; null
   * when they need not.
   */
  reason(): string | null;
  /** Reads the free space now; resolves with {@link DiskReserve.isLow}. Never throws: a failed read keeps the last state. */
  check(): Promise<boolean>;
  /** Calls `listener(low)` each time a reading crosses the reserve, either way. */
  onChange(listener: (low: boolean) => void): void;
  /** Calls `listener(reason)` each time a reading goes under half the reserve (from over it). */
  onCritical(listener: (reason: string) => void): void;
  /** Stops the periodic reading. */
  close(): void;
}

/**
 * Creates the reserve of the volume holding `dir`. `freeBytes` reads the free space (default:
 * statfs of `dir`; tests inject their own). A reserve of 0 is never low and reads nothing.
 */
export function createDiskReserve(options: {
  dir: string;
  reserveBytes: number;
  log: Logger;
  intervalMs?: number;
  freeBytes?: (dir: string) => Promise<number>;
}): DiskReserve {
  const { dir, reserveBytes, log } = options;
  const freeBytes = options.freeBytes ?? statfsFreeBytes;
  const listeners: ((low: boolean) => void)[] = [];
  const criticalListeners: ((reason: string) => void)[] = [];
  let lastFree: number | null = null;
  const isLow = () => lastFree !== null && lastFree < reserveBytes;
  const isCritical = () => lastFree !== null && lastFree < reserveBytes / 2;

  async function check(): Promise<boolean> {
    if (reserveBytes === 0) return false;
    const before = isLow();
    const wasCritical = isCritical();
    try {
      lastFree = await freeBytes(dir);
    } catch (err) {
      log.warn({ dir, err: toMessage(err) }, 'free space of the data volume could not be read');
      return before;
    }
    const low = isLow();
    if (low !== before) {
      if (low) log.warn({ freeBytes: lastFree, reserveBytes }, 'data volume under its reserve: new builds wait');
      else log.info({ freeBytes: lastFree, reserveBytes }, 'data volume back over its reserve: builds start again');
      for (const listener of listeners) listener(low);
    }
    if (isCritical() && !wasCritical) {
      const reason = `the data volume has ${Math.floor(lastFree / MiB)} MiB free, under half its ${Math.ceil(reserveBytes / MiB)} MiB reserve`;
      log.error({ freeBytes: lastFree, reserveBytes }, 'data volume under half its reserve: running builds are stopped');
      for (const listener of criticalListeners) listener(reason);
    }
    return low;
  }

  const timer = reserveBytes === 0 ? undefined : setInterval(() => void check(), options.intervalMs ?? 2000).unref();
  return {
    isLow,
    isCritical,
    reason: () =>
      isLow() && lastFree !== null ? `data volume has ${Math.floor(lastFree / MiB)} MiB free, under the ${Math.ceil(reserveBytes / MiB)} MiB reserve` : null,
    check,
    onChange: (listener) => void listeners.push(listener),
    onCritical: (listener) => void criticalListeners.push(listener),
    close: () => clearInterval(timer),
  };
}
