import { EventEmitter } from 'node:events';
import type { Build } from './build.js';

/** Events of a build's life, past tense, each with a copy of the build as it is then. */
export interface BuildEventMap {
  'build.queued': [Build];
  'build.started': [Build];
  /** any other change of a build that is not queued, started or finished (e.g. incremental known) */
  'build.updated': [Build];
  'build.finished': [Build];
}

/** The names of {@link BuildEventMap}. */
export type BuildEventName = keyof BuildEventMap;

/** Every {@link BuildEventName}, in the order of a build's life: for listeners that follow all of them. */
export const BUILD_EVENTS: readonly BuildEventName[] = ['build.queued', 'build.started', 'build.updated', 'build.finished'];

/**
 * The build event bus: the coordinator emits, the monitor, metrics and tests listen.
 * Listeners run synchronously in emit order and must not throw.
 */
export type BuildEvents = EventEmitter<BuildEventMap>;

/** Creates a build event bus with no listener limit. */
export function createBuildEvents(): BuildEvents {
  const events = new EventEmitter<BuildEventMap>();
  events.setMaxListeners(0);
  return events;
}
