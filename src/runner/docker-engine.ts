import { request } from 'node:http';
import { createInterface } from 'node:readline';

/** An answer of the Docker Engine API: its HTTP status and its JSON body (null when empty or not JSON). */
export interface EngineAnswer {
  status: number;
  body: unknown;
}

/** One event of the engine's `/events` stream (only the fields we read). */
export interface EngineEvent {
  Type?: string;
  Action?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
}

/** A subscription to the engine's events; {@link EngineEvents.close} ends it. */
export interface EngineEvents {
  /** Resolves once the engine has answered (events after that are delivered); rejects when it refuses. */
  readonly ready: Promise<void>;
  /** Ends the stream; `onEnd` is not called for it. Idempotent. */
  close(): void;
}

/**
 * A small client of the Docker Engine API over its Unix socket, for the few calls an idle
 * server makes (image and network inspection, orphan containers, events): dockerode (with
 * ssh2, gRPC and protobufjs, about 25 MiB of memory) is loaded only once a build runs.
 * Paths are unversioned: the engine answers them with its current API version.
 */
export interface DockerEngine {
  /**
   * Sends one request; resolves with any HTTP answer (callers judge the status), rejects only
   * when the engine cannot be reached. `query` values are sent as given (objects as JSON).
   */
  call(method: 'GET' | 'DELETE', path: string, query?: Record<string, string | number | boolean | object>): Promise<EngineAnswer>;
  /**
   * Subscribes to `/events` with `filters` (Engine API filter object); `onEvent` gets each
   * event, `onEnd` the end of the stream (engine restarted, connection lost) with its cause.
   * The connection never keeps the process alive.
   */
  events(filters: Record<string, string[]>, onEvent: (event: EngineEvent) => void, onEnd: (err: Error) => void): EngineEvents;
}

/**
 * True when `name` is safe to put in an Engine API path as it is: the characters of image
 * references (`registry:5000/owner/name:tag@sha256:…`) and of network and container names.
 */
export function isEngineName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$/.test(name) && !name.includes('..');
}

const toSearch = (query: Record<string, string | number | boolean | object> | undefined): string => {
  if (query === undefined) return '';
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) params.set(key, typeof value === 'object' ? JSON.stringify(value) : String(value));
  return `?${params.toString()}`;
};

/** Creates the client of the engine listening on `socketPath` (e.g. `/var/run/docker.sock`). */
export function createDockerEngine(options: { socketPath: string }): DockerEngine {
  const { socketPath } = options;
  return {
    call(method, path, query) {
      return new Promise((resolve, reject) => {
        const req = request({ socketPath, method, path: `${path}${toSearch(query)}`, headers: { host: 'docker' } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let body: unknown = null;
            try {
              body = text === '' ? null : (JSON.parse(text) as unknown);
            } catch {
              body = null;
            }
            resolve({ status: res.statusCode ?? 0, body });
          });
        });
        req.on('error', reject);
        req.end();
      });
    },
    events(filters, onEvent, onEnd) {
      let closed = false;
      let signalReady: () => void = () => undefined;
      let refuse: (err: Error) => void = () => undefined;
      const ready = new Promise<void>((ok, fail) => {
        signalReady = ok;
        refuse = fail;
      });
      // a rejected `ready` that nobody awaits is still reported through onEnd
      ready.catch(() => undefined);
      const end = (err: Error): void => {
        if (closed) return;
        closed = true;
        refuse(err);
        onEnd(err);
      };
      const req = request({ socketPath, method: 'GET', path: `/events${toSearch({ filters })}`, headers: { host: 'docker' } }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          end(new Error(`the Docker engine refused the events stream (HTTP ${res.statusCode ?? 0})`));
          return;
        }
        signalReady();
        // an ended stream (close(), the engine gone) errors the response and its reader: onEnd says so
        res.on('error', (err) => end(err));
        const lines = createInterface({ input: res, crlfDelay: Infinity });
        lines.on('error', () => undefined);
        lines.on('line', (line) => {
          if (closed || line.trim() === '') return;
          try {
            onEvent(JSON.parse(line) as EngineEvent);
          } catch {
            // a line that is not JSON is no event of ours
          }
        });
        res.on('close', () => end(new Error('the Docker events stream ended')));
      });
      req.on('socket', (socket) => socket.unref());
      req.on('error', (err) => end(err));
      req.end();
      return {
        ready,
        close() {
          if (closed) return;
          closed = true;
          req.destroy();
        },
      };
    },
  };
}
