import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config/schema.js';
import { createHostGuard } from '../http/host-guard.js';
import { createStartUpGate, type StartUpGate } from '../http/start-up-gate.js';
import type { Logger } from '../logger.js';

/** The HTTP server listening before the rest has started, and where it is reached. */
export interface EarlyListener {
  server: Server;
  /** answers 503 while starting; takes webhooks once given their routes, everything once opened */
  gate: StartUpGate;
  /** base URL it listens on, e.g. `http://127.0.0.1:8462` */
  url: string;
  /** the URL put in commit statuses and pages (config `publicUrl` without trailing slashes, else `url`) */
  publicUrl: string;
}

/**
 * Listens on `config.listen` (port 0 picks a free one) with the start-up gate as the one
 * request listener, so that every request is answered from the first on (see
 * {@link createStartUpGate}). Rejects when the address cannot be bound.
 */
export async function listenEarly(config: Readonly<Config>, log: Logger): Promise<EarlyListener> {
  const gate = createStartUpGate({
    hostGuard: createHostGuard({
      listenHost: config.listen.host,
      publicUrl: config.publicUrl,
      allowedOrigins: config.pages.allowedOrigins,
      allowedHosts: config.listen.allowedHosts,
    }),
    log: log.child({ component: 'http' }),
  });
  const server = createServer(gate.listener);
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(config.listen.port, config.listen.host, () => ok());
  });
  const { port } = server.address() as AddressInfo;
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  const url = `http://${host}:${port}`;
  return { server, gate, url, publicUrl: (config.publicUrl ?? url).replace(/\/+$/, '') };
}
