import { createHash } from 'node:crypto';
import picomatch from 'picomatch';
import { assertRepoName, parseRef } from '../builds/refs.js';
import { AppError, toMessage } from '../errors.js';
import { MAX_DEFINITION_BYTES } from './decode-definition-bytes.js';
import { parseDefinitionDocument, type BuildDefinition, type Trigger } from './definition.js';
import { DefinitionError, type DefinitionProblem } from './definition-error.js';

/** Most definition files one revision of the config repository may hold. */
export const MAX_DEFINITION_FILES = 10_000;

/** One file of a revision as read from disk or git: its path relative to the root and its bytes, or only its size when over the cap. */
export interface RevisionFile {
  /** `/`-separated path relative to the config repository root */
  file: string;
  /** the content; null when the file was not read because `size` is over {@link MAX_DEFINITION_BYTES} */
  bytes: Buffer | null;
  size: number;
}

/** A definition file of an active snapshot, parsed and with its `on:` globs compiled. */
export interface SnapshotFile {
  file: string;
  on: Trigger | null;
  definitions: readonly BuildDefinition[];
}

/**
 * An immutable, validated revision of the config repository: every definition file, by
 * repository. Builds keep the snapshot (and so the definitions) they were looked up in,
 * whatever is activated after.
 */
export interface ConfigSnapshot {
  /** config repository commit; null for a plain directory that is not a git work tree */
  sha: string | null;
  /** sha256 over the paths and contents of the definition files, hex: equal digests, equal definitions */
  digest: string;
  /** when this snapshot was activated, ISO 8601 */
  loadedAt: string;
  /** every definition file, sorted by path */
  files: readonly SnapshotFile[];
  /** `owner/repo` of every repository that has at least one definition file, sorted */
  repositories: readonly string[];
}

/**
 * What parsing each file gave, by path and content digest: a reload parses only the files
 * that changed since the last one (parsing 500 files takes ~200 ms of the event loop).
 */
export type ParseCache = Map<string, SnapshotFile | { problems: DefinitionProblem[] }>;

/** Why a ref runs, or does not run, one definition file: an entry of a dry run. */
export interface MatchCandidate {
  file: string;
  matched: boolean;
  why: string;
}

/** The outcome of looking up the definitions of one repository and ref. */
export interface DefinitionLookup {
  /** the builds to run; empty when nothing matches (see `reason`) */
  definitions: BuildDefinition[];
  /** config repository commit the definitions were read at; null in plain-directory mode */
  configSha: string | null;
  /** the file(s) that matched, relative to the config repository root, or null */
  file: string | null;
  /** why nothing matched, for logs and API answers; null when something did */
  reason: string | null;
  /** every file of the repository that was considered, and why it matched or not */
  candidates: MatchCandidate[];
}

interface CompiledFile extends SnapshotFile {
  /** the path under `<owner>/<repo>/` (`feature/x.yaml`) */
  inRepo: string;
  branchMatch: ((name: string) => boolean) | null;
  tagMatch: ((name: string) => boolean) | null;
}

const YAML_SUFFIX = '.yaml';

/** The `owner/repo` and the path under it of a definition file, or null for a file that is not one (`README.md`, `top.yaml`). */
export function definitionFileKey(file: string): { repository: string; inRepo: string } | null {
  const parts = file.split('/');
  if (parts.length < 3 || !file.endsWith(YAML_SUFFIX)) return null;
  const [owner = '', repo = ''] = parts;
  try {
    assertRepoName(owner, 'owner');
    assertRepoName(repo, 'repository name');
  } catch {
    return null;
  }
  return { repository: `${owner}/${repo}`, inRepo: parts.slice(2).join('/') };
}

/** The problems of an error thrown while parsing `file`: a {@link DefinitionError}'s own list, else the error as one problem. */
function problemsOf(err: unknown, file: string): DefinitionProblem[] {
  return err instanceof DefinitionError ? [...err.problems] : [{ file, line: null, key: '', message: `could not be read: ${toMessage(err)}` }];
}

/**
 * Validates every definition file of a revision and, when all are valid, builds its
 * snapshot. A revision is taken or refused whole: one invalid file refuses it.
 *
 * @param files - the revision's files (only `<owner>/<repo>/**.yaml` ones are definitions)
 * @returns the snapshot, or every problem found (file, line, key, message)
 */
export function buildSnapshot(
  sha: string | null,
  files: readonly RevisionFile[],
  now: Date = new Date(),
  previous: ParseCache = new Map(),
): ({ snapshot: ConfigSnapshot; problems: [] } | { snapshot: null; problems: DefinitionProblem[] }) & { cache: ParseCache } {
  const cache: ParseCache = new Map();
  const problems: DefinitionProblem[] = [];
  const definitionFiles = files.filter((f) => definitionFileKey(f.file) !== null).sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  if (definitionFiles.length > MAX_DEFINITION_FILES) {
    return {
      snapshot: null,
      problems: [{ file: '', line: null, key: '', message: `${definitionFiles.length} definition files; at most ${MAX_DEFINITION_FILES} are read` }],
      cache: previous,
    };
  }
  const digest = createHash('sha256');
  const parsed: SnapshotFile[] = [];
  for (const { file, bytes, size } of definitionFiles) {
    if (bytes === null || size > MAX_DEFINITION_BYTES) {
      problems.push({ file, line: null, key: '', message: `${size} bytes; a definition file may have at most ${MAX_DEFINITION_BYTES}` });
      continue;
    }
    // length-prefixed fields: no two different revisions hash alike
    digest.update(`${Buffer.byteLength(file)}:${file}${bytes.length}:`).update(bytes);
    // a file whose path and bytes are unchanged is not parsed again
    const key = `${file}\0${createHash('sha256').update(bytes).digest('hex')}`;
    const known = previous.get(key);
    if (known !== undefined) {
      cache.set(key, known);
      if ('problems' in known) problems.push(...known.problems);
      else parsed.push(known);
      continue;
    }
    const before = problems.length;
    try {
      // bytes, not text: the parser refuses what is not UTF-8 with the byte offset
      const doc = parseDefinitionDocument(bytes, file);
      const parsedFile = deepFreeze({ file, on: doc.on, definitions: doc.definitions });
      parsed.push(parsedFile);
      cache.set(key, parsedFile);
    } catch (err) {
      problems.push(...problemsOf(err, file));
      cache.set(key, { problems: problems.slice(before) });
    }
  }
  if (problems.length > 0) return { snapshot: null, problems, cache };
  const repositories = [...new Set(parsed.map((f) => definitionFileKey(f.file)?.repository ?? ''))].sort();
  const snapshot: ConfigSnapshot = { sha, digest: digest.digest('hex'), loadedAt: now.toISOString(), files: parsed, repositories };
  return { snapshot: deepFreeze(snapshot), problems: [], cache };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * Answers lookups on one snapshot. Precedence: a branch `feature/x` with a file
 * `<owner>/<repo>/feature/x.yaml` (the whole path, never a basename) that has no `on:` key
 * runs that file alone; otherwise every file under `<owner>/<repo>/` whose `on:` globs
 * match runs (branch globs for branches, tag globs for tags), in path order. Repository
 * names compare case-insensitively (GitHub's are); branch and tag names exactly.
 */
export interface SnapshotIndex {
  readonly snapshot: ConfigSnapshot;
  /**
   * @throws AppError `DEFINITION_INVALID` when two matching files define a build of the same name
   * @throws AppError `UNSAFE_INPUT` for names or refs that cannot be a repository or a ref
   */
  lookup(input: { owner: string; repo: string; ref: string }): DefinitionLookup;
}

/** Indexes a snapshot for lookups: files by repository, `on:` globs compiled once. */
export function indexSnapshot(snapshot: ConfigSnapshot): SnapshotIndex {
  const byRepo = new Map<string, { exact: Map<string, CompiledFile>; all: CompiledFile[] }>();
  for (const f of snapshot.files) {
    const key = definitionFileKey(f.file);
    if (key === null) continue;
    const compile = (globs: readonly string[] | undefined) => (globs === undefined || globs.length === 0 ? null : picomatch([...globs], { dot: true }));
    const compiled: CompiledFile = { ...f, inRepo: key.inRepo, branchMatch: compile(f.on?.branches), tagMatch: compile(f.on?.tags) };
    const entry = byRepo.get(key.repository.toLowerCase()) ?? { exact: new Map<string, CompiledFile>(), all: [] as CompiledFile[] };
    entry.exact.set(key.inRepo, compiled);
    entry.all.push(compiled);
    byRepo.set(key.repository.toLowerCase(), entry);
  }
  return {
    snapshot,
    lookup({ owner, repo, ref }) {
      assertRepoName(owner, 'owner');
      assertRepoName(repo, 'repository name');
      const parsed = parseRef(ref);
      const configSha = snapshot.sha;
      const entry = byRepo.get(`${owner}/${repo}`.toLowerCase());
      const candidates: MatchCandidate[] = [];
      if (entry === undefined) {
        return {
          definitions: [],
          configSha,
          file: null,
          candidates,
          reason: `no build definitions for ${owner}/${repo} (no directory ${owner}/${repo}/ with .yaml files)`,
        };
      }
      const exactName = parsed.kind === 'branch' ? `${parsed.name}${YAML_SUFFIX}` : null;
      const exact = exactName === null ? undefined : entry.exact.get(exactName);
      if (exact !== undefined && exact.on === null) {
        for (const f of entry.all) {
          candidates.push(
            f === exact
              ? { file: f.file, matched: true, why: `the file of branch ${parsed.name}` }
              : { file: f.file, matched: false, why: `branch ${parsed.name} has a file of its own, which wins` },
          );
        }
        return { definitions: [...exact.definitions], configSha, file: exact.file, reason: null, candidates };
      }
      const matched: CompiledFile[] = [];
      for (const f of entry.all) {
        const kind = parsed.kind === 'branch' ? 'branches' : 'tags';
        const match = parsed.kind === 'branch' ? f.branchMatch : f.tagMatch;
        if (f.on === null) {
          candidates.push({ file: f.file, matched: false, why: `the file of branch ${f.inRepo.slice(0, -YAML_SUFFIX.length)} only (no "on:")` });
        } else if (match === null) {
          candidates.push({ file: f.file, matched: false, why: `has no on.${kind}` });
        } else if (match(parsed.name)) {
          candidates.push({ file: f.file, matched: true, why: `on.${kind} ${JSON.stringify(f.on[kind])} matches ${parsed.name}` });
          matched.push(f);
        } else {
          candidates.push({ file: f.file, matched: false, why: `on.${kind} ${JSON.stringify(f.on[kind])} does not match ${parsed.name}` });
        }
      }
      if (matched.length === 0) {
        const reason =
          parsed.kind === 'branch'
            ? `no build definition ${owner}/${repo}/${parsed.name}.yaml, and no file under ${owner}/${repo}/ with on.branches matching ${parsed.name}`
            : `no file under ${owner}/${repo}/ with on.tags matching ${parsed.name}`;
        return { definitions: [], configSha, file: null, reason, candidates };
      }
      const seen = new Map<string, string>();
      for (const { file, definitions } of matched) {
        for (const d of definitions) {
          const other = seen.get(d.name);
          if (other !== undefined)
            throw new AppError(
              'DEFINITION_INVALID',
              `${file}: build ${JSON.stringify(d.name)} for ${ref} is also defined by ${other}; give one a distinct "tag"`,
            );
          seen.set(d.name, file);
        }
      }
      return { definitions: matched.flatMap((m) => [...m.definitions]), configSha, file: matched.map((m) => m.file).join(', '), reason: null, candidates };
    },
  };
}
