import { cp, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { simpleGit } from 'simple-git';

const IDENTITY = ['-c', 'user.name=autobuilder test', '-c', 'user.email=test@autobuilder.invalid'];

/** A real git repository on disk whose commits tests push as webhooks. */
export interface GitRepository {
  dir: string;
  /** `file://` URL to fetch from */
  url: string;
  /** Writes `files` (path → content), commits them on the current branch, returns the new sha. */
  commit(files: Record<string, string>, message?: string): Promise<string>;
  /** Commits with no tree change (a new sha with the same tree). */
  commitEmpty(message: string): Promise<string>;
  /** The tree id of commit `sha`. */
  treeOf(sha: string): Promise<string>;
  /** Creates and switches to `branch`. */
  branch(name: string): Promise<void>;
}

/**
 * Creates a git repository at `dir` on branch `main`, optionally seeded with a copy of
 * `template` as its first commit.
 */
export async function createGitRepository(dir: string, template?: string): Promise<GitRepository & { head: string | null }> {
  await mkdir(dir, { recursive: true });
  const git = simpleGit({ baseDir: dir });
  await git.raw(['init', '--quiet', '--initial-branch=main']);
  const commitAll = async (message: string, allowEmpty = false): Promise<string> => {
    await git.raw(['add', '--all']);
    await git.raw([...IDENTITY, 'commit', '--quiet', '--no-verify', ...(allowEmpty ? ['--allow-empty'] : []), '-m', message]);
    return (await git.revparse(['HEAD'])).trim();
  };
  let head: string | null = null;
  if (template !== undefined) {
    await cp(template, dir, { recursive: true });
    head = await commitAll('initial commit');
  }
  return {
    dir,
    url: `file://${dir}`,
    head,
    async commit(files, message = 'change') {
      for (const [path, content] of Object.entries(files)) {
        await mkdir(dirname(join(dir, path)), { recursive: true });
        await writeFile(join(dir, path), content);
      }
      return commitAll(message);
    },
    commitEmpty: (message) => commitAll(message, true),
    async treeOf(sha) {
      return (await git.revparse([`${sha}^{tree}`])).trim();
    },
    async branch(name) {
      await git.raw(['checkout', '--quiet', '-b', name]);
    },
  };
}
