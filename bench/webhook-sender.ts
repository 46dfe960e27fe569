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
 * Sends one signed push delivery after another to `<url>/hooks/github` at `rate` a second,
 * open loop (each on schedule, whatever the answers), each with its own
 * `X-GitHub-Delivery`, until `total` are sent or `until` settles; resolves once every
 * answer is in.
 */
export async function sendDeliveries(options: {
  url: string;
  body: string;
  signature: string;
  rate: number;
  total?: number;
  until?: Promise<unknown>;
}): Promise<DeliveriesSent> {
  const { url, body, signature, rate } = options;
  const sent: DeliveriesSent = { latencies: [], ids: [], acknowledged: [], failed: 0 };
  const stop = new AbortController();
  void options.until?.finally(() => stop.abort());
  const inFlight: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; !stop.signal.aborted && i < (options.total ?? Infinity); i++) {
    const wait = start + (i * 1000) / rate - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const id = randomUUID();
    sent.ids.push(id);
    const at = performance.now();
    inFlight.push(
      fetch(`${url}/hooks/github`, {
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
      ),
    );
  }
  await Promise.all(inFlight);
  return sent;
}
