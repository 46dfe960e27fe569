import { isTerminal, type Build } from './build.js';
import { BUILD_EVENTS, type BuildEvents } from './build-events.js';

/** Where {@link waitForEnd} reads builds: the store's `get`. */
export interface BuildLookup {
  get(id: string): Build | null;
}

/**
 * Waits until every build of `ids` has ended (a terminal state), at most `timeoutMs`
 * milliseconds, and resolves with the builds as the store has them then, in the order of
 * `ids` (a build the store no longer has is left out). `ended` tells whether all had ended.
 * Listens to the build events (every end is one: see the coordinator's `save`) and reads
 * the store once after subscribing, so an end between the caller's read and this call is
 * not missed. An abort of `signal` (the client went away) stops the wait early, resolving
 * as a timeout does; the builds themselves are never touched. Never rejects.
 */
export function waitForEnd(
  deps: { store: BuildLookup; events: BuildEvents },
  ids: readonly string[],
  options: { timeoutMs: number; signal?: AbortSignal },
): Promise<{ ended: boolean; builds: Build[] }> {
  const { store, events } = deps;
  const read = () => ids.map((id) => store.get(id)).filter((b): b is Build => b !== null);
  return new Promise((resolve) => {
    const pending = new Set(ids);
    let timer: NodeJS.Timeout | undefined;
    const onEvent = (build: Build) => {
      if (pending.has(build.id) && isTerminal(build.state)) {
        pending.delete(build.id);
        if (pending.size === 0) done();
      }
    };
    const done = () => {
      clearTimeout(timer);
      for (const name of BUILD_EVENTS) events.off(name, onEvent);
      options.signal?.removeEventListener('abort', done);
      const builds = read();
      resolve({ ended: builds.every((b) => isTerminal(b.state)), builds });
    };
    for (const name of BUILD_EVENTS) events.on(name, onEvent);
    for (const build of read()) if (isTerminal(build.state)) pending.delete(build.id);
    for (const id of [...pending]) if (store.get(id) === null) pending.delete(id);
    if (pending.size === 0 || options.timeoutMs <= 0 || options.signal?.aborted === true) {
      done();
      return;
    }
    timer = setTimeout(done, options.timeoutMs);
    options.signal?.addEventListener('abort', done, { once: true });
  });
}
