import { InvalidArgumentError } from 'commander';
import { assertRepoName, isSha, parseRef } from '../builds/refs.js';
import { buildStateSchema } from './api-schemas.js';

/**
 * Argument parsers for commander options: each returns the value as the API wants it, or
 * throws commander's InvalidArgumentError, which the program reports as a usage error (exit 2).
 */

/** `owner/name`, each part as GitHub allows. */
export function parseRepoArgument(value: string): string {
  const [owner, name, ...rest] = value.split('/');
  try {
    if (owner === undefined || name === undefined || rest.length > 0) throw new Error();
    assertRepoName(owner, 'owner');
    assertRepoName(name, 'repository name');
  } catch {
    throw new InvalidArgumentError('give the repository as owner/name, e.g. acme/widget');
  }
  return value;
}

/** A full ref (`refs/heads/x`, `refs/tags/v1`), or a branch name, which becomes `refs/heads/<name>`. */
export function parseRefArgument(value: string): string {
  const ref = value.startsWith('refs/') ? value : `refs/heads/${value}`;
  try {
    parseRef(ref);
  } catch {
    throw new InvalidArgumentError('give a branch name (main), refs/heads/<branch> or refs/tags/<tag>, as git allows them');
  }
  return ref;
}

/** A full commit sha, 40 hex (lower-cased). */
export function parseShaArgument(value: string): string {
  const sha = value.toLowerCase();
  if (!isSha(sha)) throw new InvalidArgumentError('give the full 40-hex commit sha');
  return sha;
}

/** A whole number from 1 to `max`. */
export function toCountParser(max: number): (value: string) => number {
  return (value) => {
    const n = /^\d{1,6}$/.test(value) ? Number(value) : Number.NaN;
    if (!(n >= 1 && n <= max)) throw new InvalidArgumentError(`give a whole number from 1 to ${max}`);
    return n;
  };
}

/** A build id as the server makes them (`mfx1k2p3-9f3a2c1d`); anything else cannot name a build. */
export function parseBuildIdArgument(value: string): string {
  if (!/^[a-z0-9-]{1,64}$/.test(value)) throw new InvalidArgumentError('a build id looks like mfx1k2p3-9f3a2c1d (see autobuilder list)');
  return value;
}

/** A build state: `queued`, `running`, `success`, `failure`, `error` or `cancelled`. */
export function parseStateArgument(value: string): string {
  const parsed = buildStateSchema.safeParse(value);
  if (!parsed.success) throw new InvalidArgumentError(`give one of ${buildStateSchema.options.join(', ')}`);
  return parsed.data;
}
