/** Runs async tasks one at a time per key; tasks of different keys run concurrently. */
export type SerializeByKey = <T>(key: string, task: () => Promise<T>) => Promise<T>;

/**
 * Creates a per-key serialiser: a task starts after every earlier task of the same key has
 * settled (whether it resolved or rejected). Keys are forgotten once idle, so the map stays
 * as small as the set of busy keys. In-process only.
 */
export function createSerializeByKey(): SerializeByKey {
  const tails = new Map<string, Promise<unknown>>();
  return <T>(key: string, task: () => Promise<T>): Promise<T> => {
    const next = (tails.get(key) ?? Promise.resolve()).then(task, task);
    tails.set(key, next);
    void next
      .finally(() => {
        if (tails.get(key) === next) tails.delete(key);
      })
      .catch(() => undefined);
    return next;
  };
}
