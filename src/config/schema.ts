import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { hostMountsSchema } from './host-mount.js';

const nonEmpty = z.string().trim().min(1);

/**
 * The Docker engine and build container limits of a host: the server's `docker` and a build
 * worker's (src/worker/worker-config.ts). A build gets the least of its host's, the server's
 * and its definition's limits.
 */
export const dockerEngineFields = {
  socketPath: nonEmpty.default('/var/run/docker.sock'),
  /**
   * Docker network of build containers: `autobuilder-builds` (made by scripts/host-setup.sh,
   * cut off from the host and private ranges), another existing network, or `bridge`/`none`/`host`
   */
  network: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'a Docker network name')
    .default('autobuilder-builds'),
  /** bytes of memory (and memory + swap) a build container may use */
  memoryBytes: z
    .number()
    .int()
    .positive()
    .default(2 * 1024 ** 3),
  pidsLimit: z.number().int().positive().default(1024),
  /** CPUs, fractional allowed */
  cpus: z.number().positive().default(2),
};

/** One clone-URL rewrite: a clone URL starting with `from` has that prefix replaced by `to`. */
export const cloneUrlRewriteSchema = z.object({ from: nonEmpty, to: nonEmpty }).strict();

/**
 * The server settings, validated once at start. Every field has a default, so `{}` is a
 * complete configuration (the embedded defaults the README's demo runs on). See
 * config.sample.ts for the meaning of each setting.
 */
export const configSchema = z
  .object({
    dataDir: nonEmpty.default('./data'),
    listen: z
      .object({
        host: nonEmpty.default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8462),
        /**
         * extra host names (or IP literals) a request's `Host` may name, beside the listen host,
         * the publicUrl host and the pages.allowedOrigins hosts (the DNS-rebinding guard)
         */
        allowedHosts: z.array(nonEmpty.regex(/^[^\s/:@]+$|^\[[0-9A-Fa-f:.]+\]$/, 'a host name or IP literal, without port or scheme')).default([]),
      })
      .strict()
      .prefault({}),
    publicUrl: z.url({ protocol: /^https?$/ }).optional(),
    configRepository: z
      .object({
        path: nonEmpty.default('./projects-config-repo-example'),
        url: nonEmpty.optional(),
        /** GitHub `owner/name` of the config repository */
        repository: z
          .string()
          .regex(/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/, 'must be "owner/name"')
          .optional(),
        branch: nonEmpty.default('main'),
        /** seconds between two polls for changes (0: none); the fallback for missed webhooks */
        pollSeconds: z.number().int().min(0).default(60),
      })
      .strict()
      .prefault({}),
    github: z
      .object({
        apiUrl: z.url({ protocol: /^https?$/ }).default('https://api.github.com'),
        token: nonEmpty.optional(),
        webhookSecret: nonEmpty.optional(),
        /** least ms between two status posts (GitHub suggests 1000 under heavy traffic) */
        writeIntervalMs: z.number().int().min(0).default(0),
        /**
         * create or update the webhook of every configured repository at start; off by default:
         * it needs a token allowed to manage hooks (admin:repo_hook) and a publicUrl GitHub reaches
         */
        registerWebhooks: z.boolean().default(false),
        /**
         * GitHub App mode (see README, GitHub App): the App's id and private key (PEM text, or a
         * file holding it); installation tokens per repository replace `token`. `GITHUB_APP_ID`
         * and `GITHUB_APP_PRIVATE_KEY` override them.
         */
        app: z
          .object({
            appId: z.number().int().positive(),
            privateKey: z.string().includes('PRIVATE KEY-----', { message: 'a PEM private key ("-----BEGIN … PRIVATE KEY-----")' }).optional(),
            privateKeyPath: nonEmpty.optional(),
            /** the App's webhook secret: when set, deliveries are verified with it (over `webhookSecret`) */
            webhookSecret: nonEmpty.optional(),
          })
          .strict()
          .refine((a) => (a.privateKey === undefined) !== (a.privateKeyPath === undefined), {
            message: 'give one of privateKey (or GITHUB_APP_PRIVATE_KEY) and privateKeyPath',
            path: ['privateKey'],
          })
          .optional(),
        /** what a build reports on its commit: commit statuses, check runs or both; default `checks` in App mode, else `statuses` */
        reporting: z.enum(['statuses', 'checks', 'both']).optional(),
      })
      .strict()
      .prefault({})
      // https://docs.github.com/rest/checks/runs: only a GitHub App may write check runs
      .refine((g) => g.reporting === undefined || g.reporting === 'statuses' || g.app !== undefined, {
        message: 'check runs need GitHub App mode (github.app)',
        path: ['reporting'],
      }),
    docker: z
      .object({
        ...dockerEngineFields,
        defaultImage: nonEmpty.default('autobuilder/debian-build:bookworm'),
      })
      .strict()
      .prefault({}),
    jobConcurrency: z.number().int().positive().default(availableParallelism()),
    /** waiting builds past which the manual API answers 503; default 2 × jobConcurrency */
    jobBacklog: z.number().int().positive().optional(),
    builds: z
      .object({
        defaultTimeoutSeconds: z.number().int().positive().default(3600),
        maxTimeoutSeconds: z
          .number()
          .int()
          .positive()
          .default(4 * 3600),
        outputTimeoutSeconds: z.number().int().positive().optional(),
        cancelRunningOnSupersede: z.boolean().default(false),
        shutdownGraceSeconds: z.number().int().min(0).default(60),
        /** bytes one build's log may hold (256 MiB); a build that prints more is stopped, `failure` */
        maxLogBytes: z
          .number()
          .int()
          .min(64 * 1024)
          .default(256 * 1024 ** 2),
        /** bytes of output a second one build may print (8 MiB); past that it waits in its own `write` */
        maxOutputBytesPerSecond: z
          .number()
          .int()
          .min(64 * 1024)
          .default(8 * 1024 ** 2),
        /** network of builds of pull requests from forks: `none` (no network at all) or `builds` (docker.network) */
        forkNetwork: z.enum(['none', 'builds']).default('none'),
        /** seconds a git fetch, ls-remote or checkout may go without output before it is stopped */
        gitTimeoutSeconds: z.number().int().positive().default(600),
        /**
         * MiB one build may add to its workspace (Btrfs qgroup on its subvolume; the most a
         * definition's `resources.diskMiB` may ask for); 0: no quota. The copy driver cannot enforce it.
         */
        diskQuotaMiB: z.number().int().min(0).default(4096),
        /** bytes the collected artifact of one build may have (1 GiB); a bigger one fails the build */
        maxArtifactBytes: z
          .number()
          .int()
          .positive()
          .default(1024 ** 3),
        /** MiB that must stay free on the data volume: under it, new builds wait (webhooks are still taken) */
        diskReserveMiB: z.number().int().min(0).default(2048),
        /**
         * MiB each persistent cache of a build may hold (a definition's `caches`; the most its
         * `resources.cacheMiB` may ask for); 0 turns caches off. See README, Persistent caches.
         */
        cacheMaxMiB: z.number().int().min(0).default(2048),
        /** host paths bound into every build container, read-only unless said; forks' builds get only those with `forks: true` */
        mounts: hostMountsSchema,
        secretEnv: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name'), z.string()).default({}),
      })
      .strict()
      .prefault({}),
    api: z.object({ token: nonEmpty.optional() }).strict().prefault({}),
    retention: z
      .object({
        keepPerBranch: z.number().int().positive().default(20),
        intervalSeconds: z.number().int().positive().default(3600),
        artifactGraceSeconds: z.number().int().min(0).default(3600),
        /** how long the lineage heads and mirror refs of a deleted branch or tag, or a closed pull request, are kept */
        deadRefHeadSeconds: z.number().int().min(0).default(259_200),
      })
      .strict()
      .prefault({}),
    pages: z
      .object({
        credentials: z.object({ username: nonEmpty, password: nonEmpty }).strict().optional(),
        allowedOrigins: z.array(z.url({ protocol: /^https?$/ })).default([]),
      })
      .strict()
      .prefault({}),
    /**
     * Where builds run: `local` (this process, this host: the default) or `bullmq` (build
     * workers on other machines take them from BullMQ queues on Redis; see README, Scaling out)
     */
    dispatch: z
      .object({
        mode: z.enum(['local', 'bullmq']).default('local'),
        redis: z
          .object({
            /** `redis://[:password@]host:port[/db]` or `rediss://…`; `AUTOBUILDER_REDIS_URL` overrides it */
            url: nonEmpty,
            /** CA file of a `rediss:` server signed by a private CA */
            caPath: nonEmpty.optional(),
          })
          .strict()
          .optional(),
        /** the workers and their tokens (at least 16 characters each); a worker left out is refused */
        workers: z
          .record(
            z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'a worker id: letters, digits, ".", "_" or "-"'),
            z.object({ token: z.string().min(16, 'at least 16 characters') }).strict(),
          )
          .default({}),
        /** seconds a worker's job lock lasts without renewal (BullMQ lockDuration) */
        lockDurationSeconds: z.number().positive().default(30),
        /** seconds between checks for builds whose worker's lock expired (BullMQ stalledInterval) */
        stalledIntervalSeconds: z.number().positive().default(15),
        /** seconds a build waits for the busy worker holding its workspace lineage before it goes elsewhere */
        affinityWaitSeconds: z.number().min(0).default(30),
        /** seconds without a heartbeat after which a worker is no longer live */
        heartbeatTimeoutSeconds: z.number().positive().default(10),
      })
      .strict()
      .prefault({})
      .refine((d) => d.mode === 'local' || d.redis !== undefined, { message: 'mode bullmq needs redis.url (or AUTOBUILDER_REDIS_URL)', path: ['redis'] }),
    cloneUrlRewrites: z.array(cloneUrlRewriteSchema).default([]),
    snapshotDriver: z.enum(['auto', 'btrfs', 'copy']).default('auto'),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

/** The validated, defaulted server settings (frozen by {@link loadConfig}). */
export type Config = z.infer<typeof configSchema>;

/** What a `config.ts` may export: any subset of {@link Config}, before defaults. */
export type ConfigInput = z.input<typeof configSchema>;
