import { AppError } from '../errors.js';

/** A parsed git ref of a build: a branch or a tag, with its short name. */
export type ParsedRef = { kind: 'branch'; name: string } | { kind: 'tag'; name: string };

// git check-ref-format rules (https://git-scm.com/docs/git-check-ref-format), plus a length cap.
// oxlint-disable-next-line no-control-regex -- control characters are what git forbids in ref names
const FORBIDDEN = /[\x00-\x20\x7f~^:?*[\\]|\.\.|@\{|\/\/|\/\.|\.lock(\/|$)|^\.|\/$|\.$|^-/;

/**
 * Parses `refs/heads/<branch>` or `refs/tags/<tag>` and checks the name by git's
 * check-ref-format rules, so it is safe as a git argument and as a config file path.
 * @throws AppError `UNSAFE_INPUT` (400) for any other ref or a name git would refuse
 */
export function parseRef(ref: string): ParsedRef {
  const match = /^refs\/(heads|tags)\/(.+)$/.exec(ref);
  const name = match?.[2];
  if (match === null || name === undefined || name.length > 255 || name === '@' || FORBIDDEN.test(name)) {
    throw new AppError('UNSAFE_INPUT', `not a branch or tag ref git would accept: ${JSON.stringify(ref.slice(0, 300))}`, { status: 400 });
  }
  return { kind: match[1] === 'heads' ? 'branch' : 'tag', name };
}

/** True when `ref` is a branch or tag ref that {@link parseRef} accepts. */
export function isBuildableRef(ref: string): boolean {
  try {
    parseRef(ref);
    return true;
  } catch {
    return false;
  }
}

const NAME = /^[A-Za-z0-9_.-]{1,100}$/;

/**
 * Checks a GitHub owner or repository name (letters, digits, `-`, `_`, `.`; never `.` or `..`).
 * @throws AppError `UNSAFE_INPUT` (400) otherwise
 */
export function assertRepoName(value: string, what: string): string {
  if (!NAME.test(value) || value === '.' || value === '..') {
    throw new AppError('UNSAFE_INPUT', `invalid ${what}: ${JSON.stringify(value.slice(0, 120))}`, { status: 400 });
  }
  return value;
}

/** True when `value` is a full 40-hex git commit sha (SHA-1 object name). */
export function isSha(value: string): boolean {
  return /^[0-9a-f]{40}$/.test(value);
}

/**
 * The ref a pull request's builds carry: `refs/pull/<number>/head`, the ref GitHub keeps in
 * the base repository for every pull request, forks included.
 */
export function toPullRequestRef(number: number): string {
  return `refs/pull/${number}/head`;
}

/** The ref of any build: a branch, a tag, or a pull request's head (`name` is its number). */
export type BuildRef = ParsedRef | { kind: 'pull'; name: string };

/**
 * Parses a build's ref: what {@link parseRef} accepts, or `refs/pull/<number>/head`.
 * @throws AppError `UNSAFE_INPUT` (400) for any other ref
 */
export function parseBuildRef(ref: string): BuildRef {
  const pull = /^refs\/pull\/([1-9][0-9]{0,9})\/head$/.exec(ref)?.[1];
  return pull === undefined ? parseRef(ref) : { kind: 'pull', name: pull };
}

/**
 * The lineage branch key of a ref: `branch:<name>`, `tag:<name>` or `pull:<number>`, so a
 * branch, a tag and a pull request never share a lineage head (a fork's branch named `main`
 * never becomes the head of `main`).
 * @throws AppError `UNSAFE_INPUT` as {@link parseBuildRef}
 */
export function toLineageBranch(ref: string): string {
  const parsed = parseBuildRef(ref);
  return `${parsed.kind}:${parsed.name}`;
}
