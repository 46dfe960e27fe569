/**
 * autobuilder server configuration. Copy to `config.ts` (or point AUTOBUILDER_CONFIG at
 * another file) and change what you need: every setting is optional, and the values shown
 * are the defaults. Secrets are better kept in the environment: GITHUB_WEBHOOK_SECRET,
 * GITHUB_TOKEN, GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY override `github.webhookSecret`,
 * `github.token` and `github.app`.
 */
import type { ConfigInput } from './src/config/index.js';

const config: ConfigInput = {
  // Where the database, workspaces, artifacts and logs live. Put it on Btrfs for O(1)
  // workspace snapshots (scripts/host-setup.sh does); elsewhere workspaces are copied.
  dataDir: './data',

  // Address and port the HTTP server listens on (webhooks, API, build pages). Against DNS
  // rebinding, a request's Host must name this server: the listen host (any IP literal when
  // it is 0.0.0.0 or ::, and localhost when it is a loopback address), the publicUrl host,
  // the pages.allowedOrigins hosts, or one of `allowedHosts`; any other gets 421.
  listen: { host: '127.0.0.1', port: 8462, allowedHosts: [] },

  // Base URL GitHub and people reach this server at; used in commit status target URLs.
  // Default: http://<listen.host>:<listen.port>
  // publicUrl: 'https://ci.example.com',

  // The config repository holding `<owner>/<repo>/<branch>.yaml` build definitions: a local
  // directory (`path`; a file watcher reloads it on change), or a git repository named by
  // `url` or by its GitHub `repository` (fetched into <dataDir>/config-repo.git; `url` goes
  // through `cloneUrlRewrites`). A push webhook of that repository's `branch` reloads it at
  // once; the poll every `pollSeconds` (0: never) catches missed webhooks. A revision with
  // one invalid file is refused whole: the last good definitions stay active, the problems
  // show at GET /api/config and, for a GitHub repository, as commit status
  // `autobuilder/config` (state `error`) on the refused commit.
  configRepository: {
    path: './projects-config-repo-example',
    // url: 'https://github.com/acme/autobuilder-config.git', (no token in it: a private one on
    //   the GitHub host is fetched with github.token, sent as a header, never in the URL)
    // repository: 'acme/autobuilder-config',
    branch: 'main',
    pollSeconds: 60,
  },

  github: {
    // REST API base URL: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server.
    apiUrl: 'https://api.github.com',
    // Token allowed to create commit statuses (repo:status) and to read private repositories
    // (sent only to GitHub's host, as an HTTP header through git's environment, never in a
    // URL, an argument or a log). Without one, statuses are skipped.
    // token: 'ghp_…',
    // Secret of the webhook. Without one, a random secret is generated into
    // <dataDir>/webhook-secret and its path printed at start; unsigned webhooks are never accepted.
    // webhookSecret: '…',
    // Least milliseconds between two status posts (GitHub suggests 1000 under heavy traffic;
    // rate-limit answers are honoured whatever it is).
    writeIntervalMs: 0,
    // At start, create or update the webhook of every repository in the config repository:
    // URL <publicUrl>/hooks/github, the webhook secret, events push, create, delete and
    // pull_request, JSON, TLS verified. Off by default because it needs a `token` that may
    // manage the repositories' hooks (classic: admin:repo_hook; fine-grained: "Webhooks:
    // write") and a `publicUrl` GitHub can reach; without either it is skipped with a warning.
    // Failures are logged and shown at GET /api/webhooks; the server runs on.
    registerWebhooks: false,
    // GitHub App mode (see README, GitHub App): the App's id and private key, instead of a
    // token. Installation tokens per repository are found and refreshed by the server; the App
    // needs Checks and Commit statuses (write), Contents, Metadata and Pull requests (read).
    // GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY (the PEM, `\n` escapes allowed) override them.
    // Webhook registration is skipped (the App has one webhook); `webhookSecret` here is that
    // webhook's secret and is used over github.webhookSecret.
    // app: {
    //   appId: 123456,
    //   privateKeyPath: '/etc/autobuilder/github-app.pem', // or privateKey: '-----BEGIN RSA PRIVATE KEY-----\n…'
    //   webhookSecret: '…',
    // },
    // What a build reports on its commit: 'statuses' (commit statuses), 'checks' (a check run
    // per build: summary, log tail, annotations, a rebuild button) or 'both'. Default: 'checks'
    // in GitHub App mode (`app`), else 'statuses'; check runs need App mode. The config
    // repository's `autobuilder/config` follows it. See README, Check runs.
    // reporting: 'both',
  },

  docker: {
    // Docker engine socket.
    socketPath: '/var/run/docker.sock',
    // Image for build scripts whose definition names no `baseimage`.
    defaultImage: 'autobuilder/debian-build:bookworm',
    // Network of build containers. 'autobuilder-builds' is made by scripts/host-setup.sh: it
    // reaches the outside world (package registries) but not the host's own addresses, link-local
    // (cloud metadata) or private ranges. Any existing Docker network, or 'bridge', 'none', 'host'.
    // A build fails with an error naming host-setup.sh when the network does not exist.
    network: 'autobuilder-builds',
    // Limits of every build container: memory in bytes, process count, CPUs.
    memoryBytes: 2 * 1024 ** 3,
    pidsLimit: 1024,
    cpus: 2,
  },

  // How many builds run at once. Default: the number of CPUs.
  // jobConcurrency: 2,

  // Waiting builds past which POST /api/builds answers 503 with Retry-After (webhooks are
  // still accepted and wait, with the reason shown). Default: 2 × jobConcurrency.
  // jobBacklog: 4,

  builds: {
    // Seconds a build may run when its definition sets no `timeout`, and the most any may ask.
    defaultTimeoutSeconds: 3600,
    maxTimeoutSeconds: 4 * 3600,
    // Seconds a build may print nothing before it is stopped (a definition's `outputTimeout`
    // overrides it). Default: off.
    // outputTimeoutSeconds: 600,
    // A newer push also cancels the running build of the same ref and build script (waiting
    // ones are always superseded).
    cancelRunningOnSupersede: false,
    // On SIGTERM: seconds running builds get to finish before they are cancelled. Waiting
    // builds stay queued and resume at the next start.
    shutdownGraceSeconds: 60,
    // Bytes one build's log may hold (default 256 MiB). A build that prints more is stopped
    // and ends `failure`; its log ends with a line saying where it was cut. Output lines
    // longer than 64 KiB are split into lines of 64 KiB (no byte is lost).
    maxLogBytes: 256 * 1024 ** 2,
    // Bytes of output a second one build may print (default 8 MiB/s, far more than a compiler
    // or a test run prints). Past that the build waits in its own `write`: a flood cannot take
    // the server's CPU and disk from webhooks and pages.
    maxOutputBytesPerSecond: 8 * 1024 ** 2,
    // Network of builds of pull requests from forks: 'none' (no network at all: the safe
    // default, anyone can open a pull request) or 'builds' (the `docker.network` above).
    forkNetwork: 'none',
    // Seconds a git fetch, ls-remote or checkout may go without output before it is stopped.
    gitTimeoutSeconds: 600,
    // MiB one build may add to its workspace, the checkout included (a Btrfs qgroup on its
    // subvolume, on the exclusive bytes: what it shares with the lineage head it was
    // snapshotted from does not count). A definition's `resources.diskMiB` may ask for less,
    // never more. A build that runs out ends `failure` "disk quota exceeded". 0: no quota.
    // The server turns Btrfs quotas on at start; the copy driver cannot enforce quotas.
    diskQuotaMiB: 4096,
    // Bytes the artifact of one build may have (default 1 GiB); a bigger one is not copied
    // out and the build ends `failure` "artifact larger than …".
    maxArtifactBytes: 1024 ** 3,
    // MiB that must stay free on the data volume (database, logs, artifacts). Under it new
    // builds wait, queued, with the reason in their status; webhooks are still taken. Under
    // half of it running builds are stopped (`error`). Checked every 2 s and whenever a build
    // ends. 0: no reserve.
    diskReserveMiB: 2048,
    // MiB each persistent cache of a build may hold (a definition's `caches`, e.g.
    // /root/.npm): a Btrfs qgroup limit on the build's snapshot of the cache when quotas are
    // on, and checked before the snapshot is promoted (a cache over it is not promoted; the
    // build log says so). A definition's `resources.cacheMiB` may ask for less, never more.
    // 0 turns caches off. See README, Persistent caches.
    cacheMaxMiB: 2048,
    // Host paths bound into every build container (mistry's `mounts`), read-only unless
    // `readOnly: false`. The host path must exist at start. Builds of pull requests from forks
    // get only those with `forks: true`. A writable mount is a way out of the build's sandbox:
    // see README, Host mounts.
    mounts: [
      // { host: '/opt/sdk', container: '/opt/sdk' },
      // { host: '/srv/ca/ca-certificates.crt', container: '/etc/ssl/certs/ca-certificates.crt', forks: true },
    ],
    // Env every build gets, except builds of pull requests from forks. Values are masked as
    // *** in build logs, like every other secret the server knows.
    secretEnv: {},
  },

  // Bearer token of the write endpoints (POST /api/builds, …/rebuild, …/cancel); better set
  // as AUTOBUILDER_API_TOKEN. Without one those endpoints answer 403.
  api: {
    // token: '…',
  },

  // What is kept: the newest `keepPerBranch` builds of every repository + ref + build (with
  // their logs, workspaces and artifacts), every lineage head, and anything a kept build
  // references. A pass runs at start and every `intervalSeconds`; an unreferenced artifact
  // younger than `artifactGraceSeconds` is kept. A deleted branch or tag, or a closed pull
  // request, keeps its lineage heads (workspaces) and git mirror refs for
  // `deadRefHeadSeconds` (3 days), unless it is built again meanwhile.
  retention: { keepPerBranch: 20, intervalSeconds: 3600, artifactGraceSeconds: 3600, deadRefHeadSeconds: 259_200 },

  // Who may see the build pages: with `credentials`, /monitor, /builds/…, /build/…, /api/builds…,
  // /api/repos/…/artifacts/…, /api/queue, /api/config… and /api/webhooks need HTTP Basic
  // authentication or the API token (and so does the monitor's socket); webhooks (signed),
  // /healthz, /metrics, badges, /assets/… and /api/artifacts/<digest> stay open. The monitor's
  // socket only accepts browsers from this server's own origin (publicUrl and the listen
  // address) and from `allowedOrigins`. Keep the password out of this file: read it from
  // the environment, e.g. `password: process.env.AUTOBUILDER_PAGES_PASSWORD ?? ''`.
  pages: {
    // credentials: { username: 'ops', password: '…' },
    allowedOrigins: [],
  },

  // Where builds run. 'local': on this server's Docker engine and data volume. 'bullmq': on
  // build workers (`npx autobuilder worker`, see worker.config.sample.ts and README, Scaling
  // out), through BullMQ queues on Redis; this server still decides everything else.
  dispatch: {
    mode: 'local',
    // The Redis of the workers' queues: redis://[:password@]host:port[/db] or rediss://… (TLS,
    // `caPath` for a private CA). Better set as AUTOBUILDER_REDIS_URL, which overrides `url`.
    // Needed in bullmq mode.
    // redis: { url: 'redis://127.0.0.1:6379', caPath: '/etc/autobuilder/redis-ca.pem' },
    // The workers and their tokens (at least 16 characters each); a worker left out is refused.
    // Keep the tokens out of this file, e.g. `token: process.env.AUTOBUILDER_WORKER_A_TOKEN ?? ''`.
    workers: {
      // 'worker-a': { token: '…' },
    },
    // Seconds a worker's job lock lasts without renewal (BullMQ lockDuration), and between the
    // server's checks for expired locks (stalledInterval): a worker lost mid-build ends its
    // build `error` (or, with the definition's `retry: 1`, runs it on another worker) within
    // about the sum of both.
    lockDurationSeconds: 30,
    stalledIntervalSeconds: 15,
    // Seconds a build waits for the busy worker that holds its workspace lineage (for an
    // incremental build) before it goes to any worker with a free slot.
    affinityWaitSeconds: 30,
    // Seconds without a heartbeat after which a worker is no longer live: no build is given to it.
    heartbeatTimeoutSeconds: 10,
  },

  // Clone-URL rewrites, first match wins: a clone URL from a payload starting with `from`
  // gets that prefix replaced by `to` (mirrors, or local repositories in tests).
  cloneUrlRewrites: [
    // { from: 'https://github.com/', to: 'https://git-mirror.internal/' },
  ],

  // Workspace snapshots: 'auto' (Btrfs when the data dir is on Btrfs, else copies),
  // 'btrfs' (refuse to start without it) or 'copy'.
  snapshotDriver: 'auto',

  // App log level: fatal, error, warn, info, debug, trace or silent.
  logLevel: 'info',
};

export default config;
