import { randomUUID } from 'node:crypto';

/** What {@link sendDeliveries} saw: ack latencies (ms) of the 202s, every delivery id sent, the acknowledged ones, and failures. */
export interface DeliveriesSent {
  latencies: number[];
  ids: string[];
  acknowledged: string[];
  /** answers other than 202, and requests that failed or timed out (10 s) */
  failed: number;
}

/**
 * Sends signed push deliveries to `<url>/hooks/github`, each with its own
 * `X-GitHub-Delivery`, until `total` are sent or `until` settles; resolves once every answer
 * is in. With `rate`, open loop: one after another at `rate` a second, each on schedule
 * whatever the answers (a server slower than that falls behind). With `concurrency`,
 * closed loop: that many senders, each sending its next delivery once its previous one is
 * answered, so the rate is what the server sustains. `into` is filled as answers arrive
 * (progress for the caller) and is what it resolves with.
 */
export async function sendDeliveries(
  options: { url: string; body: string; signature: string; total?: number; until?: Promise<unknown>; into?: DeliveriesSent } & (
    { rate: number; concurrency?: undefined } | { concurrency: number; rate?: undefined }
  ),
): Promise<DeliveriesSent> {
  const { url, body, signature } = options;
  const total = options.total ?? Infinity;
  const sent: DeliveriesSent = options.into ?? { latencies: [], ids: [], acknowledged: [], failed: 0 };
  const stop = new AbortController();
  void options.until?.finally(() => stop.abort());
  const send = (): Promise<void> => {
    const id = randomUUID();
    sent.ids.push(id);
    const at = performance.now();
    return fetch(`${url}/hooks/github`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': id, 'x-hub-signature-256': signature },
      body,
      signal: AbortSignal.timeout(10_000),
    }).then(
      async (response) => {
        await response.arrayBuffer();
        if (response.status === 202) {
          sent.latencies.push(performance.now() - at);
          sent.acknowledged.push(id);
        } else sent.failed++;
      },
      () => void sent.failed++,
    );
  };

  if (options.concurrency !== undefined) {
    const sender = async (): Promise<void> => {
      while (!stop.signal.aborted && sent.ids.length < total) await send();
    };
    await Promise.all(Array.from({ length: options.concurrency }, sender));
    return sent;
  }
  const inFlight: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; !stop.signal.aborted && i < total; i++) {
    const wait = start + (i * 1000) / options.rate - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    inFlight.push(send());
  }
  await Promise.all(inFlight);
  return sent;
}
