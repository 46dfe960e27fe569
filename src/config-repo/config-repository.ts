import { readFile, stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { simpleGit } from 'simple-git';
import { parseRef, assertRepoName } from '../builds/refs.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { MAX_DEFINITION_BYTES, parseDefinitionFile, type BuildDefinition } from './definition.js';

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
   * Finds the build definitions for a push of `ref` to `owner/repo`. The branch
   * `feature/x` maps to `feature/x.yaml` (never a basename).
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
      if (parsed.kind === 'tag') {
        return { definitions: [], configSha, file: null, reason: `tag builds are not configured for ${owner}/${repo}` };
      }
      const file = `${owner}/${repo}/${parsed.name}.yaml`;
      const path = resolve(root, file);
      if (!path.startsWith(root + sep)) throw new AppError('UNSAFE_INPUT', `ref ${ref} leaves the config repository`, { status: 400 });
      let text: string;
      try {
        const s = await stat(path);
        if (!s.isFile()) return { definitions: [], configSha, file: null, reason: `${file} is not a file` };
        if (s.size > MAX_DEFINITION_BYTES) throw new AppError('DEFINITION_INVALID', `${file}: larger than ${MAX_DEFINITION_BYTES} bytes`);
        text = await readFile(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          return { definitions: [], configSha, file: null, reason: `no build definition ${file} in the config repository` };
        }
        throw err;
      }
      return { definitions: parseDefinitionFile(text, file), configSha, file, reason: null };
    },
  };
}
