import { posix } from 'node:path';
import { z } from 'zod';
import { decodeDefinitionBytes } from './decode-definition-bytes.js';
import { DefinitionError, type DefinitionProblem } from './definition-error.js';
import { cachesSchema, toCacheSpec, type CacheSpec } from './cache-spec.js';
import { buildArgsSchema, contextSchema, dockerfileSchema, toDockerfileSpec, type DockerfileSpec } from './dockerfile-spec.js';
import { paramsSchema, toParamSpecs, type ParamSpec } from './param-spec.js';
import { readDefinitionYaml } from './read-definition-yaml.js';

// server.ts reads formatProblem from here; new code imports it from definition-error.ts
export { formatProblem } from './definition-error.js';

/**
 * One build of a build definition file: one build script with its options. The seed's
 * keys (`archives`, `artifact`, `baseimage`, `tag`) keep their meaning; the others are ours.
 */
export interface BuildDefinition {
  /** name of this build inside its repository: `tag` when given, else the script path */
  name: string;
  /** the build script, a normalised path relative to the repository root */
  script: string;
  /** absolute directory in the container where the artifact is found */
  archives: string;
  /** file name of the artifact inside `archives` */
  artifact: string;
  /** image to run; null means the server's default */
  baseimage: string | null;
  tag: string | null;
  /** extra environment variables for the build */
  env: Readonly<Record<string, string>>;
  /** false gives every build a fresh workspace instead of a snapshot of the last green one */
  incremental: boolean;
  /** seconds the build may run (capped by the server's maximum); null: the server's default */
  timeoutSeconds: number | null;
  /** seconds the build may go without printing a line before it is stopped; null: the server's setting */
  outputTimeoutSeconds: number | null;
  /** limits asked for; each is capped by the server's maximum */
  resources: { memoryBytes: number | null; cpus: number | null; pidsLimit: number | null; diskBytes: number | null };
  /** labels a build worker must all have to run it (bullmq dispatch); empty: any worker */
  runsOn: string[];
  /** times a build whose worker was lost is tried again on another worker (0 or 1) */
  retry: number;
  /** the image is built from this Dockerfile instead of being `baseimage`; null: `baseimage` or the server's default */
  dockerfile: DockerfileSpec | null;
  /** parameters a manual build may set, by name (each reaches the build as `AUTOBUILDER_PARAM_<NAME>`) */
  params: Readonly<Record<string, ParamSpec>>;
  /** persistent caches mounted into the build (not part of the cache key: they must not change what a build produces) */
  caches: CacheSpec;
  /** the config-repository file this came from, relative to its root */
  file: string;
}

const scriptPath = z
  .string()
  .min(1)
  .refine((p) => !p.startsWith('/') && !p.startsWith('-') && !p.includes('\0') && posix.normalize(p) === p && !p.split('/').includes('..'), {
    message: 'must be a relative path inside the repository (no "..", no leading "/" or "-")',
  });

const scriptOptions = z
  .object({
    archives: z.string().regex(/^\/[^\0]*$/, 'must be an absolute path in the container'),
    artifact: z
      .string()
      .regex(/^[^/\0]+$/, 'must be a file name (no "/")')
      .refine((n) => n !== '.' && n !== '..', 'must be a file name'),
    baseimage: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$/, 'must be a Docker image reference')
      .optional(),
    tag: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be letters, digits, ".", "_" or "-"')
      .optional(),
    env: z
      .record(
        z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name'),
        z.string().refine((v) => !v.includes('\0'), 'must not contain a NUL character'),
      )
      .optional(),
    incremental: z.boolean().optional(),
    timeout: z.number().int().positive().optional(),
    outputTimeout: z.number().int().positive().optional(),
    resources: z
      .object({
        memoryMiB: z.number().int().positive().optional(),
        cpus: z.number().positive().optional(),
        pids: z.number().int().positive().optional(),
        /** MiB the build may add to its workspace (capped by the server's builds.diskQuotaMiB) */
        diskMiB: z.number().int().positive().optional(),
        /** MiB each of the build's caches may hold (capped by the server's builds.cacheMaxMiB) */
        cacheMiB: z.number().int().positive().optional(),
      })
      .strict()
      .optional(),
    'runs-on': z
      .array(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$/, 'must be a worker label: letters, digits, ".", "_", ":" or "-"'))
      .max(16)
      .optional(),
    retry: z.union([z.literal(0), z.literal(1)], { error: 'must be 0 or 1' }).optional(),
    dockerfile: dockerfileSchema.optional(),
    context: contextSchema.optional(),
    buildArgs: buildArgsSchema.optional(),
    params: paramsSchema.optional(),
    caches: cachesSchema.optional(),
  })
  .strict();

/**
 * When a definition file applies by globs instead of by its path: its top-level
 * `on: { branches: [globs], tags: [globs] }`. Branch globs match branch names only, tag
 * globs tag names only (picomatch syntax: `*` stops at `/`, `**` does not).
 */
export interface Trigger {
  branches: string[];
  tags: string[];
}

/** A parsed definition file: its trigger (null for a file matched by its path) and builds. */
export interface DefinitionDocument {
  on: Trigger | null;
  definitions: BuildDefinition[];
}

const globList = z.array(z.string().min(1).max(200)).max(100);
const triggerSchema = z
  .object({ branches: globList.optional(), tags: globList.optional() })
  .strict()
  .refine((t) => (t.branches?.length ?? 0) + (t.tags?.length ?? 0) > 0, 'needs at least one of "branches" or "tags"');

/**
 * Parses one build definition file of the config repository (the seed's format, see
 * DESIGN §3): the YAML is read within the bounds of {@link readDefinitionYaml}, so that any
 * input is answered in bounded time and memory, then validated as a definition.
 *
 * @param input - the file's content: text, or bytes (decoded by {@link decodeDefinitionBytes})
 * @param file - its path relative to the config repository root, for messages
 * @returns one {@link BuildDefinition} per entry of `buildscripts`, in order
 * @throws DefinitionError (an AppError `DEFINITION_INVALID`) listing every problem with file, line and key
 */
export function parseDefinitionFile(input: string | Uint8Array, file: string): BuildDefinition[] {
  return parseDefinitionDocument(input, file).definitions;
}

/**
 * Parses a definition file like {@link parseDefinitionFile}, with its `on:` trigger.
 * @throws DefinitionError (an AppError `DEFINITION_INVALID`) listing every problem with file, line and key
 */
export function parseDefinitionDocument(input: string | Uint8Array, file: string): DefinitionDocument {
  const text = typeof input === 'string' ? input : decodeDefinitionBytes(input, file);
  const { data, lineOf } = readDefinitionYaml(text, file);
  const problems: DefinitionProblem[] = [];
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new DefinitionError([{ file, line: lineOf([]), key: '', message: 'a build definition is a mapping with a "buildscripts" list' }]);
  }
  const record = data as Record<string, unknown>;
  const entry = (key: string): unknown => (Object.hasOwn(record, key) ? record[key] : undefined);
  /** Key path of a zod issue under `prefix`; an unknown key points at the key itself. */
  const issuePath = (prefix: string, issue: z.core.$ZodIssue): (string | number)[] => {
    const path = [prefix, ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))];
    return issue.code === 'unrecognized_keys' && issue.keys.length === 1 && issue.keys[0] !== undefined ? [...path, issue.keys[0]] : path;
  };
  const scripts = z.array(scriptPath).min(1).safeParse(entry('buildscripts'));
  if (!scripts.success) {
    for (const issue of scripts.error.issues) {
      const path = issuePath('buildscripts', issue);
      problems.push({
        file,
        line: lineOf(path),
        key: path.join('.'),
        message: entry('buildscripts') === undefined ? 'required: a list of build scripts' : issue.message,
      });
    }
    throw new DefinitionError(problems);
  }

  let on: Trigger | null = null;
  if (Object.hasOwn(record, 'on')) {
    const trigger = triggerSchema.safeParse(record['on']);
    if (trigger.success) on = { branches: trigger.data.branches ?? [], tags: trigger.data.tags ?? [] };
    else {
      for (const issue of trigger.error.issues) {
        const path = issuePath('on', issue);
        problems.push({ file, line: lineOf(path), key: path.join('.'), message: issue.message });
      }
    }
  }

  const definitions: BuildDefinition[] = [];
  const names = new Set<string>();
  const listed = new Set(scripts.data);
  scripts.data.forEach((script, index) => {
    const options = scriptOptions.safeParse(entry(script));
    if (!options.success) {
      for (const issue of options.error.issues) {
        const path = issuePath(script, issue);
        const missing = entry(script) === undefined;
        const message = missing ? 'required: the options of this build script (archives, artifact)' : issue.message;
        // a script listed without options is best pointed at where it is listed
        const line = missing ? lineOf(['buildscripts', index]) : lineOf(path);
        problems.push({ file, line, key: path.join('.'), message });
      }
      return;
    }
    const o = options.data;
    const name = o.tag ?? script;
    // the image is named or built, not both; context and buildArgs only go with a Dockerfile
    let dockerfile: DockerfileSpec | null = null;
    if (o.dockerfile !== undefined) {
      const made = toDockerfileSpec(o.dockerfile, o.context, o.buildArgs);
      if (made.problem !== null) problems.push({ file, line: lineOf([script, 'context']), key: `${script}.context`, message: made.problem });
      if (o.baseimage !== undefined) {
        problems.push({ file, line: lineOf([script, 'baseimage']), key: `${script}.baseimage`, message: 'give either "baseimage" or "dockerfile", not both' });
      }
      if (made.spec === null || o.baseimage !== undefined) return;
      dockerfile = made.spec;
    } else {
      for (const key of ['context', 'buildArgs'] as const) {
        if (o[key] !== undefined) problems.push({ file, line: lineOf([script, key]), key: `${script}.${key}`, message: 'goes with "dockerfile" only' });
      }
      if (o.context !== undefined || o.buildArgs !== undefined) return;
    }
    if (names.has(name)) {
      problems.push({ file, line: lineOf([script]), key: script, message: `two builds are named ${JSON.stringify(name)}; give one a distinct "tag"` });
      return;
    }
    names.add(name);
    definitions.push({
      name,
      script,
      archives: o.archives,
      artifact: o.artifact,
      baseimage: o.baseimage ?? null,
      tag: o.tag ?? null,
      env: Object.freeze({ ...o.env }),
      incremental: o.incremental ?? true,
      timeoutSeconds: o.timeout ?? null,
      outputTimeoutSeconds: o.outputTimeout ?? null,
      resources: {
        memoryBytes: o.resources?.memoryMiB === undefined ? null : o.resources.memoryMiB * 1024 * 1024,
        cpus: o.resources?.cpus ?? null,
        pidsLimit: o.resources?.pids ?? null,
        diskBytes: o.resources?.diskMiB === undefined ? null : o.resources.diskMiB * 1024 * 1024,
      },
      runsOn: [...new Set(o['runs-on'] ?? [])].sort(),
      retry: o.retry ?? 0,
      dockerfile,
      params: toParamSpecs(o.params),
      caches: toCacheSpec(o.caches, o.resources?.cacheMiB),
      file,
    });
  });
  for (const key of Object.keys(record)) {
    if (key !== 'buildscripts' && key !== 'on' && !listed.has(key)) {
      problems.push({ file, line: lineOf([key]), key, message: 'not listed in "buildscripts"' });
    }
  }
  if (problems.length > 0) throw new DefinitionError(problems);
  return { on, definitions };
}
