import { z } from 'zod';

/** Names of build parameters: those of environment variables (each reaches the build as `AUTOBUILDER_PARAM_<NAME>`). */
export const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Longest name of a parameter, in characters. */
export const MAX_PARAM_NAME_LENGTH = 64;

/** Most bytes (UTF-8) of one parameter value, a default or a listed value. */
export const MAX_PARAM_VALUE_BYTES = 1024;

/** Most parameters one build definition may declare, and one request may give. */
export const MAX_PARAMS = 32;

/**
 * One declared parameter of a build definition (`params: { NAME: { … } }`). A manual build
 * may give it a value (`POST /api/builds` `params`); a build without one gets `default`, or
 * no value at all when there is none. A value must match `pattern` (the whole value) and be
 * one of `values`, when they are given.
 */
export interface ParamSpec {
  /** the value of builds that give none (webhook builds always); null: no value, the variable is not set */
  default: string | null;
  /** a JavaScript regular expression (`u` flag) the whole value must match; null: any value */
  pattern: string | null;
  /** the only values allowed; null: any value */
  values: string[] | null;
  /** what the parameter means, for people */
  description: string | null;
}

/**
 * True for an opaque parameter (mistry's term): its name starts with `_`. Its value reaches
 * the build but is not part of the cache key; a request that gives one forces a new build.
 */
export function isOpaqueParam(name: string): boolean {
  return name.startsWith('_');
}

/** Why `name` cannot name a parameter, or null. */
export function checkParamName(name: string): string | null {
  if (name.length > MAX_PARAM_NAME_LENGTH) return `a parameter name has at most ${MAX_PARAM_NAME_LENGTH} characters`;
  return PARAM_NAME.test(name) ? null : 'must be a parameter name: letters, digits and "_", not starting with a digit';
}

/** Why `value` is not a valid value of any parameter (too long, a NUL), or null. */
export function checkParamValue(value: string): string | null {
  if (value.includes('\0')) return 'must not contain a NUL character';
  if (Buffer.byteLength(value) > MAX_PARAM_VALUE_BYTES) return `longer than ${MAX_PARAM_VALUE_BYTES} bytes`;
  return null;
}

/** The pattern as the regular expression that must match a whole value. @throws SyntaxError for an invalid pattern */
export function toParamPattern(pattern: string): RegExp {
  return new RegExp(`^(?:${pattern})$`, 'u');
}

/** Why `value` is not allowed for the parameter `spec` declares (no match of its pattern, not one of its values), or null. */
export function checkParamAgainst(spec: ParamSpec, value: string): string | null {
  const basic = checkParamValue(value);
  if (basic !== null) return basic;
  if (spec.values !== null && !spec.values.includes(value))
    return `${JSON.stringify(value)} is not one of ${spec.values.map((v) => JSON.stringify(v)).join(', ')}`;
  if (spec.pattern !== null && !toParamPattern(spec.pattern).test(value))
    return `${JSON.stringify(value)} does not match the pattern ${JSON.stringify(spec.pattern)}`;
  return null;
}

const paramValue = z.string().superRefine((v, ctx) => {
  const problem = checkParamValue(v);
  if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
});

const paramSpecSchema = z
  .object({
    default: paramValue.optional(),
    pattern: z
      .string()
      .min(1)
      .max(1000)
      .superRefine((p, ctx) => {
        try {
          toParamPattern(p);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: `not a valid regular expression: ${err instanceof Error ? err.message : String(err)}` });
        }
      })
      .optional(),
    values: z.array(paramValue).min(1).max(100).optional(),
    description: z.string().max(500).optional(),
  })
  .strict()
  .nullable();

/**
 * The zod schema of a definition's `params` mapping: names of environment variables (at most
 * {@link MAX_PARAM_NAME_LENGTH} characters, {@link MAX_PARAMS} of them), each declared by a
 * mapping of `default`, `pattern`, `values` and `description` (all optional; `NAME:` alone
 * declares a parameter that takes any value). A default must itself be allowed; an opaque
 * parameter (`_NAME`) has none, since it forces a new build whenever it is given.
 */
export const paramsSchema = z.record(z.string(), paramSpecSchema).superRefine((params, ctx) => {
  const names = Object.keys(params);
  if (names.length > MAX_PARAMS) ctx.addIssue({ code: 'custom', message: `${names.length} parameters; at most ${MAX_PARAMS}` });
  for (const name of names) {
    const problem = checkParamName(name);
    if (problem !== null) ctx.addIssue({ code: 'custom', path: [name], message: problem });
  }
  for (const [name, raw] of Object.entries(params)) {
    if (raw?.default === undefined) continue;
    if (isOpaqueParam(name)) {
      ctx.addIssue({
        code: 'custom',
        path: [name, 'default'],
        message: 'an opaque parameter (its name starts with "_") has no default: giving it forces a new build',
      });
      continue;
    }
    const problem = checkParamAgainst(toParamSpec(raw), raw.default);
    if (problem !== null) ctx.addIssue({ code: 'custom', path: [name, 'default'], message: `the default is not allowed: ${problem}` });
  }
});

/** One declaration as {@link paramsSchema} read it, as a {@link ParamSpec}. */
function toParamSpec(raw: z.infer<typeof paramSpecSchema>): ParamSpec {
  return {
    default: raw?.default ?? null,
    pattern: raw?.pattern ?? null,
    values: raw?.values === undefined ? null : [...raw.values],
    description: raw?.description ?? null,
  };
}

/** The declarations of a definition's `params` as read by {@link paramsSchema}, by name. */
export function toParamSpecs(raw: z.infer<typeof paramsSchema> | undefined): Readonly<Record<string, ParamSpec>> {
  const out: Record<string, ParamSpec> = {};
  for (const [name, spec] of Object.entries(raw ?? {})) out[name] = Object.freeze(toParamSpec(spec));
  return Object.freeze(out);
}
