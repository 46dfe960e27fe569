import { z } from 'zod';
import { MAX_CACHES } from '../config/container-path.js';
import { hostMountSchema, MAX_HOST_MOUNTS } from '../config/host-mount.js';

/**
 * The dispatch protocol between the server and its build workers (bullmq mode):
 *
 * - **Jobs**: the server puts each build on the BullMQ queue of the worker it chose
 *   ({@link workerQueueName}); the job's data is a {@link BuildJob}, checked against
 *   {@link buildJobSchema} by the worker before anything runs. Job ids are
 *   `<buildId>.<attempt>`: BullMQ refuses a second job with an id it holds, so one attempt is
 *   queued once.
 * - **Progress, log and end**: the worker appends {@link StreamEntry} entries to the Redis
 *   Stream {@link logStreamKey} of the attempt, with explicit ids `0-1`, `0-2`, …: Redis
 *   refuses an id that is not above the last, so an append retried after a reconnect is
 *   stored once, and the server reads from its last id on, so it applies each entry once
 *   and in order. The `end` entry is the attempt's result.
 * - **Cancel**: the server publishes a {@link CancelMessage} on {@link CANCEL_CHANNEL}; the
 *   worker running that attempt stops it.
 * - **Liveness**: workers send heartbeats to the server over HTTP (worker token); BullMQ's
 *   job lock (renewed by the worker) and stalled check find a worker that died mid-build.
 * - **Artifacts** are uploaded over HTTP to the server's content-addressed store, which
 *   hashes them itself.
 */
export const DISPATCH_PROTOCOL_VERSION = 1;

/** Worker ids: letters, digits, `.`, `_`, `-` (they name queues and appear in URLs). */
export const workerIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'letters, digits, ".", "_" or "-", at most 63');

/** Labels a worker has and a definition's `runs-on` asks for. */
export const labelSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$/, 'letters, digits, ".", "_", ":" or "-", at most 63');

/** The BullMQ queue one worker takes its builds from. */
export const workerQueueName = (workerId: string): string => `autobuilder-worker-${workerId}`;

/** The BullMQ job id of one attempt of a build. */
export const jobIdOf = (buildId: string, attempt: number): string => `${buildId}.${attempt}`;

/** The Redis Stream of one attempt of a build: its progress, log lines and end. */
export const logStreamKey = (buildId: string, attempt: number): string => `autobuilder:build:${buildId}:${attempt}`;

/** The Redis pub/sub channel of cancels. */
export const CANCEL_CHANNEL = 'autobuilder:cancel';

const sha = z.string().regex(/^[0-9a-f]{40}$/);
const buildId = z.string().regex(/^[a-z0-9]{1,16}-[0-9a-f]{8}$/);
const envSchema = z.record(
  z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/),
  z.string().refine((v) => !v.includes('\0')),
);

const cacheInputsSchema = z.object({
  tree: z.string(),
  definition: z.string(),
  image: z.string(),
  script: z.string(),
  env: z.string(),
  params: z.string().optional(),
});

const contextFileSchema = z.object({
  path: z.string().min(1).max(4096),
  kind: z.enum(['file', 'executable', 'symlink']),
  id: z.string().regex(/^[0-9a-f]{40,64}$/),
  size: z.number().int().nonnegative(),
});

/** An EnvImagePlan (src/images/env-image.ts) as a job carries it; a config repository context's files come with it, base64. */
const envImagePlanSchema = z.object({
  tag: z.string().regex(/^autobuilder\/env:[0-9a-f]{64}$/),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  name: z.string().min(1).max(2000),
  source: z.enum(['commit', 'config']),
  context: z.string().min(1).max(1000),
  dockerfile: z.string().min(1).max(1000),
  buildArgs: z.record(z.string(), z.string()),
  fork: z.boolean(),
  files: z
    .array(contextFileSchema.extend({ data: z.string() }))
    .max(1000)
    .nullable(),
  problem: z.string().max(2000).nullable(),
  rekey: z.boolean(),
});

/** A build's end as an attempt reports it. */
export const buildEndSchema = z.object({
  state: z.enum(['success', 'failure', 'error', 'cancelled']),
  description: z.string().max(4096).nullable(),
  exitCode: z.number().int().nullable().optional(),
  artifacts: z
    .array(z.object({ name: z.string().min(1).max(255), digest: z.string().regex(/^[0-9a-f]{64}$/), size: z.number().int().nonnegative() }))
    .max(16)
    .optional(),
});

/** One build attempt as a worker receives it. */
export const buildJobSchema = z
  .object({
    v: z.literal(DISPATCH_PROTOCOL_VERSION),
    buildId,
    attempt: z.number().int().min(1).max(10),
    build: z.object({
      id: buildId,
      repo: z.string().regex(/^[^/\s]+\/[^/\s]+$/),
      ref: z.string().startsWith('refs/'),
      sha,
      cacheInputs: cacheInputsSchema,
      /** the build's parameters (given or defaults), by name */
      params: envSchema.default({}),
    }),
    definition: z.object({
      name: z.string().min(1),
      script: z.string().min(1),
      archives: z.string().startsWith('/'),
      artifact: z.string().regex(/^[^/\0]+$/),
      baseimage: z.string().nullable(),
      tag: z.string().nullable(),
      env: envSchema,
      incremental: z.boolean(),
      timeoutSeconds: z.number().int().positive().nullable(),
      outputTimeoutSeconds: z.number().int().positive().nullable(),
      resources: z.object({
        memoryBytes: z.number().positive().nullable(),
        cpus: z.number().positive().nullable(),
        pidsLimit: z.number().int().positive().nullable(),
        diskBytes: z.number().positive().nullable(),
      }),
      runsOn: z.array(labelSchema).max(16),
      retry: z.number().int().min(0).max(1),
      dockerfile: z
        .object({ source: z.enum(['commit', 'config']), path: z.string().min(1), context: z.string().min(1), buildArgs: z.record(z.string(), z.string()) })
        .nullable()
        .default(null),
      params: z
        .record(
          z.string(),
          z.object({
            default: z.string().nullable(),
            pattern: z.string().nullable(),
            values: z.array(z.string()).nullable(),
            description: z.string().nullable(),
          }),
        )
        .default({}),
      caches: z.object({ paths: z.array(z.string()).max(MAX_CACHES), maxBytes: z.number().int().positive().nullable() }).default({ paths: [], maxBytes: null }),
      file: z.string(),
    }),
    request: z.object({
      owner: z.string().min(1),
      repo: z.string().min(1),
      ref: z.string().startsWith('refs/'),
      pullRequest: z.number().int().positive().optional(),
      fromFork: z.boolean().optional(),
      sha,
      /** already through the server's clone-URL rewrites */
      cloneUrl: z.string().min(1),
      defaultBranch: z.string().nullable(),
    }),
    policy: z.object({
      defaultImage: z.string().min(1),
      defaultTimeoutSeconds: z.number().int().positive(),
      maxTimeoutSeconds: z.number().int().positive(),
      outputTimeoutSeconds: z.number().int().positive().nullable(),
      maxResources: z.object({ memoryBytes: z.number().positive(), cpus: z.number().positive(), pidsLimit: z.number().int().positive() }),
      diskQuotaBytes: z.number().positive().nullable(),
      maxArtifactBytes: z.number().int().positive(),
      secretEnv: envSchema,
      maxLogBytes: z.number().int().positive(),
      forkNetwork: z.enum(['none', 'builds']),
      cacheMaxBytes: z.number().int().min(0).default(0),
      mounts: z.array(hostMountSchema).max(MAX_HOST_MOUNTS).default([]),
    }),
    /** git's credential for the clone URL's host, when the server has one for it: never in argv or a URL */
    gitAuth: z.object({ host: z.string().min(1), token: z.string().min(1) }).nullable(),
    /** the plan of the build's image when its definition names a Dockerfile (see EnvImagePlan): the worker builds it on its own engine */
    envImage: envImagePlanSchema.nullable().default(null),
  })
  .strict();

/** One build attempt as a worker receives it. */
export type BuildJob = z.infer<typeof buildJobSchema>;

/** What the worker reports as a build progresses (the server stores only these fields). */
export const reportSchema = z
  .object({
    state: z.literal('running').optional(),
    startedAt: z.iso.datetime().optional(),
    description: z.string().max(4096).optional(),
    incremental: z.boolean().optional(),
    parentBuildId: buildId.nullable().optional(),
    cacheInputs: cacheInputsSchema.optional(),
  })
  .strict();

/** An entry of an attempt's stream, JSON in its field `e`. */
export const streamEntrySchema = z.discriminatedUnion('t', [
  z.object({ t: z.literal('taken'), worker: workerIdSchema }),
  z.object({ t: z.literal('report'), changes: reportSchema }),
  z.object({ t: z.literal('lines'), lines: z.array(z.string()).max(10_000) }),
  z.object({ t: z.literal('end'), end: buildEndSchema }),
]);

/** An entry of an attempt's stream. */
export type StreamEntry = z.infer<typeof streamEntrySchema>;

/** Why the server stops an attempt: a StopReason (build-lifecycle.ts). */
const stopReasonSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('timeout'), seconds: z.number() }),
  z.object({ kind: z.literal('output-timeout'), seconds: z.number() }),
  z.object({ kind: z.literal('cancelled'), description: z.string().max(4096) }),
  z.object({ kind: z.literal('log-limit'), bytes: z.number() }),
  z.object({ kind: z.literal('disk-critical'), reason: z.string().max(4096) }),
]);

/** A stop of one attempt, published on {@link CANCEL_CHANNEL}; the worker stops it with `reason`. */
export const cancelMessageSchema = z.object({ buildId, attempt: z.number().int().min(1), reason: stopReasonSchema }).strict();

/** A cancel, published on {@link CANCEL_CHANNEL}. */
export type CancelMessage = z.infer<typeof cancelMessageSchema>;

/** A worker's heartbeat to the server (`POST /api/workers/heartbeat`). */
export const heartbeatSchema = z
  .object({
    id: workerIdSchema,
    host: z.string().min(1).max(253),
    labels: z.array(labelSchema).max(64),
    /** builds it runs at once */
    capacity: z.number().int().min(0).max(1024),
    /** build ids of the attempts it runs now */
    running: z.array(z.string().max(64)).max(1024),
    version: z.string().max(64),
    /** true once it drains (SIGTERM): it takes no more builds */
    draining: z.boolean(),
  })
  .strict();

/** A worker's heartbeat to the server. */
export type Heartbeat = z.infer<typeof heartbeatSchema>;

/** `value` without its keys whose value is `undefined` (what zod's optional fields give), typed so. */
export function definedOnly<T extends object>(value: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}
