/**
 * The send loop of a durable outbox (commit statuses, check runs): one pass at a time over
 * what is due, a call during a pass makes another pass follow, a timer for the entry due next,
 * and the publishes in flight, so that `flush` also waits for changes not yet stored.
 *
 * Contract: `send` never rejects (a failing pass, e.g. the outbox's database closed, goes to
 * `onError` and ends the passes until the next call); after `close` no pass starts and no
 * timer is left. It sends nothing itself: the pass does.
 */
export interface OutboxSender {
  /** Starts a pass, or makes the running one go round again; resolves when the passes end. */
  send(): Promise<void>;
  /** Tracks a publish in flight (its change may not be stored yet); returns `work`. */
  track(work: Promise<void>): Promise<void>;
  /** Resolves once every tracked publish has settled and no pass runs. */
  flush(): Promise<void>;
  /** Stops: no more passes, the timer cleared. A pass under way should check its own closed flag. */
  close(): void;
}

/** Longest delay `setTimeout` takes (ms); a later due time is waited for in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Creates the loop. `pass` sends what is due now and resolves with whether it should look
 * again at once (it sent something, and more may have become due); `nextDueAt` gives when
 * the earliest waiting entry is due (ms since the epoch, null for none), read after the
 * passes end to set the timer; `onError` hears a pass or `nextDueAt` that threw.
 */
export function createOutboxSender(options: {
  pass: () => Promise<boolean>;
  nextDueAt: () => number | null;
  now: () => number;
  onError: (err: unknown) => void;
}): OutboxSender {
  const { pass, nextDueAt, now, onError } = options;
  let draining: Promise<void> | null = null;
  let again = false;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  /** read through a call: `close` may run while a pass awaits */
  const isClosed = () => closed;
  const pending = new Set<Promise<void>>();

  function schedule(): void {
    clearTimeout(timer);
    const at = closed ? null : nextDueAt();
    if (at !== null) timer = setTimeout(() => void send(), Math.min(Math.max(0, at - now()), MAX_TIMER_MS)).unref();
  }

  function send(): Promise<void> {
    if (closed) return Promise.resolve();
    again = true;
    if (draining !== null) return draining;
    draining = (async () => {
      while (again && !isClosed()) {
        again = false;
        if (await pass()) again = true;
      }
    })()
      .catch(onError)
      .finally(() => {
        draining = null;
        // a call that came after the last pass looked at `again`, but before this settled
        try {
          if (again) void send();
          else schedule();
        } catch (err) {
          onError(err);
        }
      });
    return draining;
  }

  return {
    send,
    track(work) {
      pending.add(work);
      const untrack = () => pending.delete(work);
      work.then(untrack, untrack);
      return work;
    },
    async flush() {
      // changes published but not yet stored are sent too: close() after flush() loses none
      while (pending.size > 0) await Promise.allSettled([...pending]);
      // a pass may have been running when the last change came: it leaves `again` set
      while (draining !== null) await draining;
    },
    close() {
      closed = true;
      clearTimeout(timer);
    },
  };
}
