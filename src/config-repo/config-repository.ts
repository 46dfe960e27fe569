import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import picomatch from 'picomatch';
import { simpleGit } from 'simple-git';
import { parseRef, assertRepoName } from '../builds/refs.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { MAX_DEFINITION_BYTES, parseDefinitionDocument, type BuildDefinition, type DefinitionDocument } from './definition.js';

/** The outcome of looking up the definitions of one repository and ref. */
export interface DefinitionLookup {
  /** the builds to run; empty when nothing matches (see `reason`) */
  definitions: BuildDefinition[];
  /** config repository commit the definitions were read at; null in plain-directory mode */
  configSha: string | null;
  /** the file that matched, relative to the config repository root, or null */
  file: string | null;
  /** why nothing matched, for logs and API answers; null when something did */
  reason: string | null;
}

/** The config repository: per-branch build definitions at `<owner>/<repo>/<branch>.yaml`. */
export interface ConfigRepository {
  /** Brings the checkout up to date (git mode: fetch and hard reset; directory mode: nothing). */
  refresh(): Promise<void>;
  /**
   * Finds the build definitions for a push of `ref` to `owner/repo`. Precedence: a branch
   * `feature/x` with a file `<owner>/<repo>/feature/x.yaml` (never a basename) that has no
   * `on:` key runs that file alone; otherwise every file under `<owner>/<repo>/` whose `on:`
   * globs match runs (branch globs for branches, tag globs for tags), in path order.
   * @throws AppError `DEFINITION_INVALID` when the matching file does not validate
   * @throws AppError `UNSAFE_INPUT` for names or refs that cannot be a path
   */
  lookup(input: { owner: string; repo: string; ref: string }): Promise<DefinitionLookup>;
}

/** Where the config repository comes from: a local directory, or a git URL cloned into `checkoutDir`. */
export type ConfigRepositorySource = { kind: 'directory'; path: string } | { kind: 'git'; url: string; branch: string; checkoutDir: string };

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Reads and parses a definition file; null when there is none at `path`, or when
 * `onlyWithTrigger` and the text has no top-level `on:` key (a file matched by its path is
 * not parsed while looking for glob files, so a broken or oversized one cannot hide the
 * others).
 */
async function readDocument(path: string, file: string, onlyWithTrigger = false): Promise<DefinitionDocument | null> {
  let text: string;
  try {
    const s = await stat(path);
    if (!s.isFile()) return null;
    if (s.size > MAX_DEFINITION_BYTES) {
      if (onlyWithTrigger) return null;
      throw new AppError('DEFINITION_INVALID', `${file}: larger than ${MAX_DEFINITION_BYTES} bytes`);
    }
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw err;
  }
  if (onlyWithTrigger && !/^(on|"on"|'on')[ \t]*:/m.test(text)) return null;
  return parseDefinitionDocument(text, file);
}

/** Every `*.yaml` file under `dir` (not following symlinks), sorted by path. */
async function yamlFilesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch((err: NodeJS.ErrnoException) =>
    err.code === 'ENOENT' ? [] : Promise.reject(err),
  );
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.yaml'))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

/**
 * Creates the config repository reader. In git mode the repository is cloned with
 * simple-git on the first {@link ConfigRepository.refresh}.
 */
export function createConfigRepository(options: { source: ConfigRepositorySource; log: Logger }): ConfigRepository {
  const { source, log } = options;
  const root = resolve(source.kind === 'directory' ? source.path : source.checkoutDir);

  async function currentSha(): Promise<string | null> {
    if (!(await exists(join(root, '.git')))) return null;
    try {
      return (await simpleGit({ baseDir: root }).revparse(['HEAD'])).trim();
    } catch {
      return null;
    }
  }

  return {
    async refresh() {
      if (source.kind === 'directory') return;
      if (!(await exists(join(root, '.git')))) {
        log.info({ url: source.url, dir: root }, 'cloning config repository');
        await simpleGit().clone(source.url, root, ['--branch', source.branch, '--single-branch']);
        return;
      }
      const git = simpleGit({ baseDir: root });
      await git.fetch('origin', source.branch);
      await git.reset(['--hard', `origin/${source.branch}`]);
    },
    async lookup({ owner, repo, ref }) {
      assertRepoName(owner, 'owner');
      assertRepoName(repo, 'repository name');
      const parsed = parseRef(ref);
      const configSha = await currentSha();
      const repoDir = join(root, owner, repo);

      if (parsed.kind === 'branch') {
        const file = `${owner}/${repo}/${parsed.name}.yaml`;
        const path = resolve(root, file);
        if (!path.startsWith(root + sep)) throw new AppError('UNSAFE_INPUT', `ref ${ref} leaves the config repository`, { status: 400 });
        const exact = await readDocument(path, file);
        if (exact !== null && exact.on === null) return { definitions: exact.definitions, configSha, file, reason: null };
      }

      const matched: { file: string; definitions: BuildDefinition[] }[] = [];
      for (const path of await yamlFilesUnder(repoDir)) {
        const file = relative(root, path).split(sep).join('/');
        const doc = await readDocument(path, file, true);
        const globs = doc?.on === null || doc === null ? [] : parsed.kind === 'branch' ? doc.on.branches : doc.on.tags;
        if (doc !== null && globs.length > 0 && picomatch(globs, { dot: true })(parsed.name)) matched.push({ file, definitions: doc.definitions });
      }
      if (matched.length === 0) {
        const reason =
          parsed.kind === 'branch'
            ? `no build definition ${owner}/${repo}/${parsed.name}.yaml, and no file under ${owner}/${repo}/ with on.branches matching ${parsed.name}`
            : `no file under ${owner}/${repo}/ with on.tags matching ${parsed.name}`;
        return { definitions: [], configSha, file: null, reason };
      }
      const seen = new Map<string, string>();
      for (const { file, definitions } of matched) {
        for (const d of definitions) {
          const other = seen.get(d.name);
          if (other !== undefined) throw new AppError('DEFINITION_INVALID', `${file}: build ${JSON.stringify(d.name)} for ${ref} is also defined by ${other}; give one a distinct "tag"`);
          seen.set(d.name, file);
        }
      }
      return { definitions: matched.flatMap((m) => m.definitions), configSha, file: matched.map((m) => m.file).join(', '), reason: null };
    },
  };
}
