import { createHash } from 'node:crypto';
import type { BuildDefinition } from '../config-repo/definition.js';
import { checkParamAgainst, checkParamName, isOpaqueParam, MAX_PARAMS } from '../config-repo/param-spec.js';
import { AppError } from '../errors.js';
import { toCanonicalJson } from './cache-key.js';

/** Prefix of the environment variable of each parameter: `AUTOBUILDER_PARAM_<NAME>`. */
export const PARAM_ENV_PREFIX = 'AUTOBUILDER_PARAM_';

/** One problem of the parameters of a request: the parameter's name and what is wrong. */
export interface ParamProblem {
  name: string;
  message: string;
}

/**
 * Checks the parameters a request gives against the definitions it builds: each must be a
 * valid name with a valid value (at most 1 KiB, no NUL), declared by at least one of them,
 * and allowed by every one that declares it (its `pattern`, its `values`).
 * @returns every problem, one per parameter at most, in the order given; empty when all are fine
 */
export function checkRequestParams(definitions: readonly Pick<BuildDefinition, 'name' | 'params'>[], given: Readonly<Record<string, string>>): ParamProblem[] {
  const problems: ParamProblem[] = [];
  const names = Object.keys(given);
  if (names.length > MAX_PARAMS) return [{ name: names.slice(MAX_PARAMS).join(', '), message: `${names.length} parameters; at most ${MAX_PARAMS}` }];
  for (const name of names) {
    const value = given[name] as string;
    const badName = checkParamName(name);
    if (badName !== null) {
      problems.push({ name, message: badName });
      continue;
    }
    const declaring = definitions.filter((d) => Object.hasOwn(d.params, name));
    if (declaring.length === 0) {
      const declared = [...new Set(definitions.flatMap((d) => Object.keys(d.params)))].sort();
      problems.push({
        name,
        message: `not declared by ${definitions.length === 1 ? 'the build' : 'any of the builds'} (${declared.length === 0 ? 'none declares parameters' : `declared: ${declared.join(', ')}`})`,
      });
      continue;
    }
    for (const d of declaring) {
      const problem = checkParamAgainst(d.params[name] as NonNullable<BuildDefinition['params'][string]>, value);
      if (problem !== null) {
        problems.push({ name, message: declaring.length === 1 ? problem : `${problem} (build ${d.name})` });
        break;
      }
    }
  }
  return problems;
}

/**
 * The same as {@link checkRequestParams}, thrown.
 * @throws AppError `PARAMS_INVALID` (422) naming every bad parameter and why
 */
export function assertRequestParams(definitions: readonly Pick<BuildDefinition, 'name' | 'params'>[], given: Readonly<Record<string, string>>): void {
  const problems = checkRequestParams(definitions, given);
  if (problems.length === 0) return;
  throw new AppError('PARAMS_INVALID', `invalid parameters: ${problems.map((p) => `${p.name}: ${p.message}`).join('; ')}`, { status: 422 });
}

/**
 * The parameters one build gets: for each its definition declares, the value the request
 * gives, else the default; one without either is left out. Given values the definition does
 * not declare are not its (another build of the request declares them).
 */
export function resolveParams(definition: Pick<BuildDefinition, 'params'>, given: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, spec] of Object.entries(definition.params)) {
    const value = given !== undefined && Object.hasOwn(given, name) ? given[name] : (spec.default ?? undefined);
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/** True when a build's parameters hold an opaque one (`_NAME`): the build must run whatever the cache holds. */
export function hasOpaqueParams(params: Readonly<Record<string, string>>): boolean {
  return Object.keys(params).some(isOpaqueParam);
}

/** The environment variables of a build's parameters: `AUTOBUILDER_PARAM_<NAME>` = value. */
export function toParamEnv(params: Readonly<Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(params)) env[`${PARAM_ENV_PREFIX}${name}`] = value;
  return env;
}

/**
 * The cache input of a build's parameters: sha256 (hex) of the canonical JSON of those that
 * are not opaque, or null when there are none (a build without parameters has the key it had
 * before parameters existed).
 */
export function toParamsDigest(params: Readonly<Record<string, string>>): string | null {
  const keyed = Object.fromEntries(Object.entries(params).filter(([name]) => !isOpaqueParam(name)));
  if (Object.keys(keyed).length === 0) return null;
  return createHash('sha256').update(toCanonicalJson(keyed)).digest('hex');
}
