import { AppError, toMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { isEngineName, type DockerEngine, type EngineEvents } from './docker-engine.js';

/** Image events after which a name may point at another image (or none): every cached id is dropped. */
const IMAGE_EVENTS = ['tag', 'untag', 'delete', 'import', 'load', 'pull'];

/** Most image names remembered; the oldest answer goes first past it. */
const MAX_ENTRIES = 256;

/** Ids of images by name, remembered between build decisions; see {@link createImageIdCache}. */
export interface ImageIdCache {
  /**
   * The id (`sha256:…`) of the image `name` names on the engine, or null when the engine does
   * not have it (a missing image is never remembered).
   * @throws AppError `CONTAINER_FAILED` when the engine cannot be reached or fails
   */
  imageId(name: string): Promise<string | null>;
  /** Forgets every answer and ends the events subscription; later calls inspect again (and subscribe again). */
  close(): void;
}

/**
 * Remembers `docker image inspect` answers per image name, so that deciding a build does not
 * ask the engine each time (a cache key needs the image id).
 *
 * Staying correct: an image name is moved by `docker build -t`, `docker tag`, `docker load`,
 * `docker import` or `docker pull`, and freed by `docker rmi`; the engine reports each as an
 * image event. The cache subscribes to those events (on its first use, never while idle) and
 * drops every remembered id on any of them: image events are rare next to builds, and which
 * name an `untag` or `delete` frees is not in the event, so dropping all is the simple
 * correct answer. An id is remembered only while the subscription is up and only when no
 * event came while it was being inspected; when the stream ends (the engine restarted) all is
 * dropped and the next call subscribes again. `ttlMs` (default 60 s) bounds how long an id
 * is trusted even so: the events make the cache right within the engine's delivery of an
 * event (sub-millisecond on its socket), the TTL makes a lost event cost at most that long.
 */
export function createImageIdCache(options: { engine: DockerEngine; log: Logger; ttlMs?: number; now?: () => number }): ImageIdCache {
  const { engine, log } = options;
  const ttlMs = options.ttlMs ?? 60_000;
  const now = options.now ?? Date.now;
  const known = new Map<string, { id: string; at: number }>();
  /** inspections under way, with the generation they started in (a later one must not join them) */
  const inFlight = new Map<string, { asked: Promise<string | null>; generation: number }>();
  /** bumped by every image event and every loss of the subscription */
  let generation = 0;
  let subscription: EngineEvents | null = null;
  let subscribed = false;

  const forget = (): void => {
    generation++;
    known.clear();
  };
  const subscribe = (): void => {
    if (subscription !== null) return;
    const current = engine.events(
      { type: ['image'], event: IMAGE_EVENTS },
      () => forget(),
      (err) => {
        if (subscription !== current) return;
        subscription = null;
        subscribed = false;
        forget();
        log.debug({ err: err.message }, 'Docker image events ended: image ids are inspected again');
      },
    );
    subscription = current;
    current.ready.then(
      () => {
        if (subscription === current) subscribed = true;
      },
      () => undefined,
    );
  };

  async function inspect(name: string): Promise<string | null> {
    if (!isEngineName(name)) return null;
    let answer;
    try {
      answer = await engine.call('GET', `/images/${name}/json`);
    } catch (err) {
      throw new AppError('CONTAINER_FAILED', `cannot reach Docker: ${toMessage(err)}`, { cause: err });
    }
    if (answer.status === 404) return null;
    const id = (answer.body as { Id?: unknown } | null)?.Id;
    if (answer.status !== 200 || typeof id !== 'string') {
      throw new AppError('CONTAINER_FAILED', `cannot reach Docker: image inspection answered HTTP ${answer.status}`);
    }
    return id;
  }

  return {
    async imageId(name) {
      subscribe();
      const hit = known.get(name);
      if (hit !== undefined && now() - hit.at < ttlMs) return hit.id;
      const pending = inFlight.get(name);
      if (pending !== undefined && pending.generation === generation) return pending.asked;
      const before = generation;
      const wasSubscribed = subscribed;
      const asked = inspect(name);
      const entry = { asked, generation: before };
      inFlight.set(name, entry);
      const id = await asked.finally(() => {
        if (inFlight.get(name) === entry) inFlight.delete(name);
      });
      if (id !== null && wasSubscribed && subscribed && generation === before) {
        known.delete(name);
        known.set(name, { id, at: now() });
        if (known.size > MAX_ENTRIES) known.delete(known.keys().next().value as string);
      }
      return id;
    },
    close() {
      const current = subscription;
      subscription = null;
      subscribed = false;
      forget();
      current?.close();
    },
  };
}
