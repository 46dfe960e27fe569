/**
 * autobuilder build worker configuration (see README, Scaling out). Copy to
 * `worker.config.ts` (or point AUTOBUILDER_WORKER_CONFIG at another file) on each build host
 * and start the worker with `npx autobuilder worker` or `npm run worker`. `serverUrl`,
 * `token` and `redis.url` must be set; every other setting is optional, and the values shown
 * are the defaults. Keep the secrets in the environment: AUTOBUILDER_WORKER_TOKEN and
 * AUTOBUILDER_REDIS_URL override `token` and `redis.url`.
 */
import type { WorkerConfigInput } from './src/worker/worker-config.js';

const config: WorkerConfigInput = {
  // This worker's id: the name of its build queue, the key of its token in the server's
  // `dispatch.workers`, and what /monitor, GET /api/workers and build pages show.
  // Letters, digits, '.', '_' and '-'. Default: this host's name.
  id: 'worker-a',

  // The server's base URL. The worker sends its heartbeats there (every `heartbeatSeconds`)
  // and uploads each build's artifact there; it never listens on a port itself.
  serverUrl: 'http://127.0.0.1:8462',

  // This worker's token: the one the server lists for this id in `dispatch.workers` (at least
  // 16 characters). Better set as AUTOBUILDER_WORKER_TOKEN, which overrides this.
  token: '',

  redis: {
    // The server's Redis: redis://[:password@]host:port[/db], or rediss://… for TLS. Better set
    // as AUTOBUILDER_REDIS_URL (it carries the password), which overrides this.
    url: 'redis://127.0.0.1:6379',
    // CA file that signs a rediss:// server's certificate, when it is not a public CA.
    // caPath: '/etc/autobuilder/redis-ca.pem',
  },

  // What this worker offers: a build definition whose `runs-on` lists labels runs only on a
  // worker that has all of them, e.g. ['arm64'] or ['big', 'gpu'].
  labels: [],

  // Builds this worker runs at once.
  capacity: 1,

  // The worker's own data directory: workspaces (Btrfs subvolumes when it is on Btrfs, as
  // on the server), git mirrors and temporary files. Never the server's data directory.
  dataDir: './worker-data',

  // Workspace snapshots: 'auto' (Btrfs when dataDir is on Btrfs, else copies), 'btrfs'
  // (refuse to start without it) or 'copy'.
  snapshotDriver: 'auto',

  docker: {
    // This host's Docker engine.
    socketPath: '/var/run/docker.sock',
    // Network of build containers (scripts/host-setup.sh makes 'autobuilder-builds' on this host).
    network: 'autobuilder-builds',
    // This host's limits per build container: a build gets the least of these, the server's
    // `docker` limits and its definition's `resources`.
    memoryBytes: 2 * 1024 ** 3,
    pidsLimit: 1024,
    cpus: 2,
  },

  builds: {
    // Seconds a git fetch or checkout may go without output before it is stopped.
    gitTimeoutSeconds: 600,
    // Bytes of output a second one build may print; past that the build waits in its `write`.
    maxOutputBytesPerSecond: 8 * 1024 ** 2,
  },

  // Seconds between heartbeats (at most 60). Keep it well under the server's
  // `dispatch.heartbeatTimeoutSeconds`, or the worker counts as not live between two of them.
  heartbeatSeconds: 2,

  // Log level: fatal, error, warn, info, debug, trace or silent.
  logLevel: 'info',
};

export default config;
