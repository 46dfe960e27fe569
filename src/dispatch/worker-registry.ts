import { EventEmitter } from 'node:events';
import type { Heartbeat } from './protocol.js';

/** A worker as the server knows it from its heartbeats. */
export interface WorkerInfo extends Heartbeat {
  /** when its last heartbeat came, ISO 8601 */
  lastHeartbeatAt: string;
  /** when its first heartbeat of this run came, ISO 8601 */
  firstHeartbeatAt: string;
  /** true while heartbeats come within the registry's TTL */
  live: boolean;
  /** build ids the server has given it and not yet seen end */
  assigned: string[];
}

/**
 * The workers of a bullmq-mode server, from their heartbeats (`POST /api/workers/heartbeat`):
 * a worker is live while its last heartbeat is younger than `ttlMs`. The server's own
 * assignments are counted here too, so a worker is never given more than its capacity.
 */
export interface WorkerRegistry {
  heartbeat(beat: Heartbeat): void;
  /** Every worker heard of since the start, live or not, by id. */
  list(): WorkerInfo[];
  get(id: string): WorkerInfo | null;
  isLive(id: string): boolean;
  /** Counts `buildId` against `id`'s capacity until {@link release}. */
  assign(id: string, buildId: string): void;
  release(id: string, buildId: string): void;
  /** Builds `id` can still take: capacity − assigned, 0 when draining or not live. */
  freeSlots(id: string): number;
  /** Called on every heartbeat and assignment change (a waiting build may be placed now). */
  onChange(listener: () => void): () => void;
  /** Stops its timer. */
  close(): void;
}

/** Creates the registry; `ttlMs` is how long a worker stays live after a heartbeat. */
export function createWorkerRegistry(options: { ttlMs: number; now?: () => number }): WorkerRegistry {
  const now = options.now ?? Date.now;
  const workers = new Map<string, { beat: Heartbeat; last: number; first: number; assigned: Set<string> }>();
  const events = new EventEmitter<{ change: [] }>();
  events.setMaxListeners(0);
  const isLive = (id: string) => {
    const w = workers.get(id);
    return w !== undefined && now() - w.last <= options.ttlMs;
  };
  const info = (id: string): WorkerInfo | null => {
    const w = workers.get(id);
    if (w === undefined) return null;
    return {
      ...w.beat,
      lastHeartbeatAt: new Date(w.last).toISOString(),
      firstHeartbeatAt: new Date(w.first).toISOString(),
      live: isLive(id),
      assigned: [...w.assigned],
    };
  };
  // a worker whose heartbeats stopped changes what waiting builds may do (another worker)
  const expiry = setInterval(() => events.emit('change'), Math.max(250, Math.floor(options.ttlMs / 4))).unref();
  return {
    heartbeat(beat) {
      const known = workers.get(beat.id);
      const at = now();
      workers.set(beat.id, { beat, last: at, first: known === undefined || !isLive(beat.id) ? at : known.first, assigned: known?.assigned ?? new Set() });
      events.emit('change');
    },
    list: () => [...workers.keys()].sort().map((id) => info(id) as WorkerInfo),
    get: info,
    isLive,
    assign(id, buildId) {
      workers.get(id)?.assigned.add(buildId);
      events.emit('change');
    },
    release(id, buildId) {
      workers.get(id)?.assigned.delete(buildId);
      events.emit('change');
    },
    freeSlots(id) {
      const w = workers.get(id);
      if (w === undefined || !isLive(id) || w.beat.draining) return 0;
      return Math.max(0, w.beat.capacity - w.assigned.size);
    },
    onChange(listener) {
      events.on('change', listener);
      return () => events.off('change', listener);
    },
    close() {
      clearInterval(expiry);
    },
  };
}
