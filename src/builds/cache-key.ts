import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';

/**
 * The inputs a build's result depends on, each as a digest, so two builds can be compared
 * input by input. A build's cache key is the hash of these.
 */
export interface CacheInputs {
  /** git tree id of the commit (the commit message, author and parents do not count) */
  tree: string;
  /** sha256 of the normalised build definition */
  definition: string;
  /** id of the image the script runs in (`sha256:…`), not its tag */
  image: string;
  /**
   * git blob id of the build script at the commit, `missing`, or {@link SCRIPT_NOT_YET_READ}
   * until the commit is fetched. The tree fixes it, so it is not part of the cache key: it
   * is kept to say what changed between two builds.
   */
  script: string;
  /** sha256 of the build's environment */
  env: string;
  /**
   * sha256 of the build's parameters that are not opaque (see build-params.ts); absent when it
   * has none, so a build without parameters keeps the key it had before there were any
   */
  params?: string | undefined;
}

/** The names of {@link CacheInputs}, in a fixed order. */
export const CACHE_INPUT_NAMES = ['tree', 'definition', 'image', 'script', 'env', 'params'] as const satisfies readonly (keyof CacheInputs)[];

/** The `script` input of a build decided from a push payload's tree id before its commit was fetched. */
export const SCRIPT_NOT_YET_READ = 'not yet read';

/**
 * Version of the key's encoding: changing what goes into a key must change this.
 * 2: the repository is part of every key. 3: the script's blob is not (the tree fixes it).
 */
const KEY_VERSION = 3;

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Canonical JSON (RFC 8785, JSON Canonicalization Scheme): sorted keys, fixed number and
 * string forms, so equal values always give equal bytes. Never plain concatenation, which
 * is ambiguous (`"ab" + "c"` = `"a" + "bc"`).
 */
export function toCanonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value has no JSON form');
  return text;
}

/**
 * Builds the cache inputs of a build from its raw inputs.
 * @param input.definition - the normalised definition: what the script is and where its
 *   artifact is, without names that do not change the result (tag, file)
 * @param input.env - the build's own environment (from the definition); ids and refs that
 *   differ between identical builds are left out on purpose, so a tag of an already built
 *   commit is a cache hit
 */
export function toCacheInputs(input: {
  tree: string;
  definition: { script: string; archives: string; artifact: string; image: string; incremental: boolean; runsOn?: readonly string[] };
  imageId: string;
  scriptBlob: string | null;
  env: Readonly<Record<string, string>>;
  /** the digest of the build's keyed parameters (see `toParamsDigest`); absent or null: none */
  params?: string | null;
}): CacheInputs {
  return {
    tree: input.tree,
    definition: sha256(toCanonicalJson(input.definition)),
    image: input.imageId,
    script: input.scriptBlob ?? 'missing',
    env: sha256(toCanonicalJson(input.env)),
    ...(input.params === undefined || input.params === null ? {} : { params: input.params }),
  };
}

/**
 * The cache key of a build: sha256 (64 hex) of the canonical JSON of its inputs and its
 * `repository` (`owner/name`, case-insensitive, as GitHub's names are): two repositories
 * never share results, whatever their trees, since a repository's owner decides what its
 * result may be (an artifact of `other-org/twin` is never served for `acme/twin`). A `scope`
 * keeps builds that must not share results with others of the same repository apart: only
 * builds of the same scope get the same key (a fork's pull request, whose untrusted
 * workspace could otherwise hand a made-up result to a trusted build of the same tree).
 */
export function toCacheKey(inputs: CacheInputs, where: { repository: string; scope?: string | undefined }): string {
  const repository = where.repository.toLowerCase();
  const { script: _script, params, ...rest } = inputs;
  // absent and undefined alike: no parameters, and the key a build had before there were any
  const keyed = params === undefined ? rest : { ...rest, params };
  return sha256(
    toCanonicalJson(where.scope === undefined ? { v: KEY_VERSION, repository, ...keyed } : { v: KEY_VERSION, repository, ...keyed, scope: where.scope }),
  );
}

/** The inputs that differ between two builds, in {@link CACHE_INPUT_NAMES} order; a script not yet read differs from nothing. */
export function diffCacheInputs(a: CacheInputs, b: CacheInputs): (keyof CacheInputs)[] {
  return CACHE_INPUT_NAMES.filter(
    (name) => a[name] !== b[name] && !(name === 'script' && (a.script === SCRIPT_NOT_YET_READ || b.script === SCRIPT_NOT_YET_READ)),
  );
}
