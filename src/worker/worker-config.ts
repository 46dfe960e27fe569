import { hostname } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { dockerEngineFields } from '../config/schema.js';
import { AppError } from '../errors.js';
import { labelSchema, workerIdSchema } from '../dispatch/protocol.js';

const nonEmpty = z.string().trim().min(1);

/**
 * A build worker's configuration (`worker.config.ts`, default export; path from
 * `AUTOBUILDER_WORKER_CONFIG`). Secrets may come from the environment instead:
 * `AUTOBUILDER_WORKER_TOKEN`, `AUTOBUILDER_REDIS_URL`.
 */
export const workerConfigSchema = z
  .object({
    /** the worker's id: its queue's name, in /api/workers and on build pages; default the host name */
    id: workerIdSchema.optional(),
    /** the server's base URL, e.g. `https://ci.example.com` (heartbeats and artifact uploads) */
    serverUrl: z.url({ protocol: /^https?$/ }),
    /** this worker's token, as listed in the server's `dispatch.workers` */
    token: z.string().min(16, 'at least 16 characters'),
    redis: z
      .object({
        /** `redis://[:password@]host:port[/db]` or `rediss://…` (TLS) */
        url: nonEmpty,
        /** CA file for a `rediss:` server signed by a private CA */
        caPath: nonEmpty.optional(),
      })
      .strict(),
    /** what this worker offers, for definitions' `runs-on` (e.g. `arm64`, `big`) */
    labels: z.array(labelSchema).max(64).default([]),
    /** builds it runs at once */
    capacity: z.number().int().min(1).max(256).default(1),
    /** its own data directory (workspaces on Btrfs, git mirrors, temp files) */
    dataDir: nonEmpty.default('./worker-data'),
    snapshotDriver: z.enum(['auto', 'btrfs', 'copy']).default('auto'),
    /** this host's engine and caps: a build gets the least of these, the server's and its definition's */
    docker: z.object(dockerEngineFields).strict().prefault({}),
    builds: z
      .object({
        gitTimeoutSeconds: z.number().int().positive().default(600),
        maxOutputBytesPerSecond: z
          .number()
          .int()
          .positive()
          .default(8 * 1024 ** 2),
      })
      .strict()
      .prefault({}),
    /** seconds between heartbeats to the server */
    heartbeatSeconds: z.number().positive().max(60).default(2),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

/** A checked worker configuration, with its defaults and an absolute `dataDir`. */
export type WorkerConfig = z.infer<typeof workerConfigSchema> & { id: string; dataDir: string };

/** Input of {@link loadWorkerConfig}: what a config file may leave out. */
export type WorkerConfigInput = z.input<typeof workerConfigSchema>;

/**
 * Checks a worker configuration, with `AUTOBUILDER_WORKER_TOKEN` and `AUTOBUILDER_REDIS_URL`
 * from `env` over the file's.
 * @throws AppError `CONFIG_INVALID` listing every problem as `key: message`
 */
export function loadWorkerConfig(input: unknown, env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const base = typeof input === 'object' && input !== null ? (input as Record<string, unknown>) : {};
  const redis = typeof base['redis'] === 'object' && base['redis'] !== null ? (base['redis'] as Record<string, unknown>) : {};
  const merged = {
    ...base,
    ...(env['AUTOBUILDER_WORKER_TOKEN'] === undefined ? {} : { token: env['AUTOBUILDER_WORKER_TOKEN'] }),
    redis: { ...redis, ...(env['AUTOBUILDER_REDIS_URL'] === undefined ? {} : { url: env['AUTOBUILDER_REDIS_URL'] }) },
  };
  const parsed = workerConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new AppError('CONFIG_INVALID', `invalid worker configuration: ${problems.join('; ')}`);
  }
  const id =
    parsed.data.id ??
    hostname()
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .slice(0, 63);
  const dataDir = isAbsolute(parsed.data.dataDir) ? parsed.data.dataDir : resolve(parsed.data.dataDir);
  return { ...parsed.data, id, dataDir };
}
