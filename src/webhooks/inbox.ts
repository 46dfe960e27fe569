import type { BuildRequest } from '../builds/build-request.js';
import type { Coordinator } from '../builds/coordinator.js';
import { toMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { BuildStore, DeliveryRecord } from '../store/build-store.js';
import type { DeliveryWriter } from '../store/delivery-writer.js';

/** How long delivery ids are kept for dedupe, in days (GitHub redelivers up to 3 days back). */
export const DELIVERY_RETENTION_DAYS = 7;

/**
 * The durable inbox of webhook deliveries. A delivery is stored before the webhook is
 * answered, keyed by `X-GitHub-Delivery`, so a redelivery never builds twice and a crash
 * between the answer and the work loses nothing: {@link Inbox.recover} hands on what was
 * accepted and never processed.
 *
 * Writes are group-committed off the event loop ({@link DeliveryWriter}): the deliveries that
 * arrive while one transaction is being committed are stored together in the next, so one
 * fsync (`synchronous=FULL`) acknowledges many deliveries. The answer waits for the commit.
 *
 * Deliveries are taken in from the moment the server listens, before the coordinator may
 * build: what is handed on before {@link Inbox.recover} is held and handed on by it.
 */
export interface Inbox {
  /** Stores a delivery that asks for a build; resolves false when that delivery id was stored before (a redelivery). */
  accept(delivery: DeliveryRecord, request: BuildRequest): Promise<boolean>;
  /** Stores a delivery that asks for nothing (ping, ignored), for dedupe and the record; resolves false on a redelivery. */
  record(delivery: DeliveryRecord): Promise<boolean>;
  /**
   * Hands an accepted request to the coordinator, then marks its delivery processed. Before
   * {@link Inbox.recover} has run, the request is held for it instead. Never throws.
   * Writes the delivery's one log line once the coordinator has answered (see
   * {@link DeliveryTrace}); without `trace`, on the inbox's logger, timed from the hand-on.
   */
  handOn(deliveryId: string, request: BuildRequest, trace?: DeliveryTrace): Promise<void>;
  /**
   * Once, when the server has started: hands on every accepted, unprocessed delivery, oldest
   * first, then those held meanwhile that were not among them; returns how many it handed on.
   */
  recover(): Promise<number>;
}

/**
 * Where the one log line of a delivery that asks for a build goes: `log` is the delivery's
 * logger (bound to its `deliveryId` and `event`), `startedAt` when it came in
 * (`performance.now()`, for the line's `ms`).
 */
export interface DeliveryTrace {
  log: Logger;
  startedAt: number;
}

/** Creates the inbox: writes go through `writer` (group commit), reads through `store`. */
export function createInbox(options: { store: BuildStore; writer: DeliveryWriter; coordinator: Coordinator; log: Logger }): Inbox {
  const { store, writer, coordinator, log } = options;
  const write = async (delivery: DeliveryRecord, request?: BuildRequest): Promise<boolean> => (await writer.write([{ delivery, request }]))[0] === true;

  /** requests handed on before recover() ended, by delivery id, in arrival order */
  let held: Map<string, { request: BuildRequest; trace: DeliveryTrace | undefined }> | null = new Map();

  const handOnNow = async (deliveryId: string, request: BuildRequest, trace?: DeliveryTrace): Promise<void> => {
    const dlog = trace?.log ?? log.child({ deliveryId });
    const startedAt = trace?.startedAt ?? performance.now();
    const fields = () => ({ repo: `${request.owner}/${request.repo}`, ref: request.ref, sha: request.sha, ms: Math.round(performance.now() - startedAt) });
    try {
      const { builds, reason } = await coordinator.submit(request);
      // the delivery's one line at info (the route logs none for it)
      if (builds.length > 0) dlog.info({ ...fields(), outcome: 'built', builds: builds.map((b) => b.id) }, 'delivery handled');
      else dlog.info({ ...fields(), outcome: 'not built', reason }, 'delivery handled');
    } catch (err) {
      // stays unprocessed: the next start tries again
      dlog.error({ ...fields(), outcome: 'failed', err: toMessage(err) }, 'build request failed');
      return;
    }
    // a request that made builds was marked with them; this covers the ones that made none
    // (a lost mark only means the request is looked up again after a restart)
    await writer
      .write([], [deliveryId])
      .catch((err: unknown) => dlog.warn({ err: toMessage(err) }, 'delivery not marked processed; it is looked up again at the next start'));
  };
  return {
    accept: (delivery, request) => write(delivery, request),
    record: (delivery) => write(delivery),
    async handOn(deliveryId, request, trace) {
      if (held !== null) held.set(deliveryId, { request, trace });
      else await handOnNow(deliveryId, request, trace);
    },
    async recover() {
      const pending = store.unprocessedDeliveries();
      for (const { id, request } of pending) await handOnNow(id, request);
      if (pending.length > 0) log.info({ deliveries: pending.length }, 'handed on deliveries accepted before a restart or during the start');
      // held ones that were committed after the read above (the others were just handed on)
      const seen = new Set(pending.map((p) => p.id));
      let late = 0;
      const queue = held;
      // re-read each turn: more may be held while one is handed on
      for (let next = queue?.entries().next(); queue !== null && next !== undefined && next.done !== true; next = queue.entries().next()) {
        const [id, { request, trace }] = next.value;
        queue.delete(id);
        if (seen.has(id)) continue;
        late++;
        await handOnNow(id, request, trace);
      }
      held = null; // no await since the queue was found empty: nothing is left behind
      return pending.length + late;
    },
  };
}
