import { z } from 'zod';

/**
 * The answers of the autobuilder HTTP API as the CLI reads them (README, HTTP API): only the
 * fields the CLI uses are checked; the others are kept (loose objects), so `--json` prints
 * what the server sent.
 */

/** A build's state (src/builds/build.ts). */
export const buildStateSchema = z.enum(['queued', 'running', 'success', 'failure', 'error', 'cancelled']);

/** A build as `GET /api/builds/:id` shows it (src/http/build-view.ts). */
export const buildViewSchema = z.looseObject({
  id: z.string(),
  repo: z.string(),
  ref: z.string(),
  sha: z.string(),
  definition: z.string(),
  context: z.string(),
  state: buildStateSchema,
  exitCode: z.number().nullable(),
  description: z.string().nullable(),
  cached: z.boolean(),
  coalesced: z.boolean(),
  sourceBuildId: z.string().nullable(),
  queuedAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  artifacts: z.array(z.looseObject({ name: z.string(), digest: z.string(), size: z.number(), url: z.string() })),
  logUrl: z.string(),
  pageUrl: z.string(),
});

/** A build as the CLI reads it. */
export type BuildViewAnswer = z.infer<typeof buildViewSchema>;

/** `{ builds }`: the answer of a trigger, a rebuild, and `GET /api/builds` (with `nextCursor`). */
export const buildListSchema = z.looseObject({ builds: z.array(buildViewSchema), nextCursor: z.string().nullable().optional() });

/** A waiting build of `GET /api/queue` (src/builds/scheduler.ts, WaitingBuild). */
export const waitingBuildSchema = z.looseObject({
  buildId: z.string(),
  priority: z.string(),
  position: z.number().nullable(),
  waitsFor: z.enum(['slot', 'build']),
  joined: z.string().nullable(),
  backlogNote: z.string().nullable(),
  reason: z.string(),
});

/** `GET /api/queue` (src/builds/scheduler.ts, QueueInfo). */
export const queueSchema = z.looseObject({
  concurrency: z.number(),
  backlog: z.number(),
  running: z.array(z.string()),
  waiting: z.array(waitingBuildSchema),
  deciding: z.array(z.string()),
  blocked: z.string().nullable(),
  stopping: z.boolean(),
});

/** The queue as the CLI reads it. */
export type QueueAnswer = z.infer<typeof queueSchema>;
