import type { BuildRequest } from '../builds/build-request.js';
import type { Coordinator } from '../builds/coordinator.js';
import { toMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { BuildStore, DeliveryRecord } from '../store/build-store.js';

/** How long delivery ids are kept for dedupe, in days (GitHub redelivers up to 3 days back). */
export const DELIVERY_RETENTION_DAYS = 7;

/**
 * The durable inbox of webhook deliveries that ask for builds. A delivery is stored before
 * the webhook is answered, keyed by `X-GitHub-Delivery`, so a redelivery never builds twice
 * and a crash between the answer and the work loses nothing: {@link Inbox.recover} hands on
 * what was accepted and never processed.
 */
export interface Inbox {
  /** Stores the delivery and its request; false when that delivery id was stored before (a redelivery). */
  accept(delivery: DeliveryRecord, request: BuildRequest): boolean;
  /** Hands an accepted request to the coordinator, then marks its delivery processed. Never throws. */
  handOn(deliveryId: string | null, request: BuildRequest): Promise<void>;
  /** At start: hands on every accepted, unprocessed delivery, oldest first; returns how many. */
  recover(): Promise<number>;
}

/** Creates the inbox over the build store's deliveries. */
export function createInbox(options: { store: BuildStore; coordinator: Coordinator; log: Logger }): Inbox {
  const { store, coordinator, log } = options;
  const handOn = async (deliveryId: string | null, request: BuildRequest): Promise<void> => {
    try {
      await coordinator.submit(request);
      if (deliveryId !== null) store.markDeliveryProcessed(deliveryId);
    } catch (err) {
      // stays unprocessed: the next start tries again
      log.error({ deliveryId, err: toMessage(err) }, 'build request failed');
    }
  };
  return {
    accept: (delivery, request) => store.recordDelivery(delivery, request),
    handOn,
    async recover() {
      const pending = store.unprocessedDeliveries();
      for (const { id, request } of pending) await handOn(id, request);
      if (pending.length > 0) log.info({ deliveries: pending.length }, 'handed on deliveries accepted before a restart');
      return pending.length;
    },
  };
}
