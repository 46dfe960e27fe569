import { posix } from 'node:path';
import { LineCounter, parseDocument, isNode } from 'yaml';
import { z } from 'zod';
import { AppError } from '../errors.js';

/** Largest definition file read, in bytes: a build definition is a few lines. */
export const MAX_DEFINITION_BYTES = 256 * 1024;

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
  resources: { memoryBytes: number | null; cpus: number | null; pidsLimit: number | null };
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
    artifact: z.string().regex(/^[^/\0]+$/, 'must be a file name (no "/")').refine((n) => n !== '.' && n !== '..', 'must be a file name'),
    baseimage: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$/, 'must be a Docker image reference').optional(),
    tag: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be letters, digits, ".", "_" or "-"').optional(),
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name'), z.string()).optional(),
    incremental: z.boolean().optional(),
    timeout: z.number().int().positive().optional(),
    outputTimeout: z.number().int().positive().optional(),
    resources: z
      .object({ memoryMiB: z.number().int().positive().optional(), cpus: z.number().positive().optional(), pids: z.number().int().positive().optional() })
      .strict()
      .optional(),
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

/** One problem found in a definition file, located by line and key path. */
export interface DefinitionProblem {
  file: string;
  line: number | null;
  key: string;
  message: string;
}

function formatProblems(problems: readonly DefinitionProblem[]): string {
  return problems.map((p) => `${p.file}${p.line === null ? '' : `:${p.line}`}: ${p.key || '(root)'}: ${p.message}`).join('\n');
}

/**
 * Parses one build definition file of the config repository (the seed's format, see
 * DESIGN §3). YAML is read with the core schema only (no custom tags) and a cap on aliases.
 *
 * @param text - the file's content (UTF-8)
 * @param file - its path relative to the config repository root, for messages
 * @returns one {@link BuildDefinition} per entry of `buildscripts`, in order
 * @throws AppError `DEFINITION_INVALID` listing every problem with file, line and key
 */
export function parseDefinitionFile(text: string, file: string): BuildDefinition[] {
  return parseDefinitionDocument(text, file).definitions;
}

/**
 * Parses a definition file like {@link parseDefinitionFile}, with its `on:` trigger.
 * @throws AppError `DEFINITION_INVALID` listing every problem with file, line and key
 */
export function parseDefinitionDocument(text: string, file: string): DefinitionDocument {
  if (Buffer.byteLength(text) > MAX_DEFINITION_BYTES) {
    throw new AppError('DEFINITION_INVALID', `${file}: larger than ${MAX_DEFINITION_BYTES} bytes`);
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { schema: 'core', uniqueKeys: true, lineCounter, prettyErrors: false });
  const problems: DefinitionProblem[] = [];
  const lineOf = (path: readonly PropertyKey[]): number | null => {
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n), true);
      if (isNode(node) && node.range) return lineCounter.linePos(node.range[0]).line;
    }
    return null;
  };
  // Warnings count too: an unknown tag such as `!!js/function` is only a warning to the parser.
  for (const err of [...doc.errors, ...doc.warnings]) {
    problems.push({ file, line: lineCounter.linePos(err.pos[0]).line, key: '', message: err.message.split('\n')[0] ?? err.code });
  }
  if (problems.length > 0) throw new AppError('DEFINITION_INVALID', formatProblems(problems));

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new AppError('DEFINITION_INVALID', `${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new AppError('DEFINITION_INVALID', `${file}: a build definition is a mapping with a "buildscripts" list`);
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
      problems.push({ file, line: lineOf(path), key: path.join('.'), message: entry('buildscripts') === undefined ? 'required: a list of build scripts' : issue.message });
    }
    throw new AppError('DEFINITION_INVALID', formatProblems(problems));
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
  for (const script of scripts.data) {
    const options = scriptOptions.safeParse(entry(script));
    if (!options.success) {
      for (const issue of options.error.issues) {
        const path = issuePath(script, issue);
        const missing = entry(script) === undefined;
        const message = missing ? 'required: the options of this build script (archives, artifact)' : issue.message;
        // a script listed without options is best pointed at where it is listed
        const line = missing ? lineOf(['buildscripts', scripts.data.indexOf(script)]) : lineOf(path);
        problems.push({ file, line, key: path.join('.'), message });
      }
      continue;
    }
    const o = options.data;
    const name = o.tag ?? script;
    if (names.has(name)) {
      problems.push({ file, line: lineOf([script]), key: script, message: `two builds are named ${JSON.stringify(name)}; give one a distinct "tag"` });
      continue;
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
      },
      file,
    });
  }
  for (const key of Object.keys(record)) {
    if (key !== 'buildscripts' && key !== 'on' && !scripts.data.includes(key)) {
      problems.push({ file, line: lineOf([key]), key, message: 'not listed in "buildscripts"' });
    }
  }
  if (problems.length > 0) throw new AppError('DEFINITION_INVALID', formatProblems(problems));
  return { on, definitions };
}
