import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { SimpleGit } from 'simple-git';
import { AppError, toMessage } from '../errors.js';
import { createHardenedGit } from '../git/hardened-git.js';
import { toPathSegment } from '../snapshots/workspaces.js';
import { isSha } from './refs.js';

/** The prefix under which checkout.ts keeps every commit it fetched: `refs/autobuilder/<sha>`. */
const PREFIX = 'refs/autobuilder/';

/**
 * The refs that hold fetched commits in the bare mirrors of `<dataDir>/git` (see
 * checkout.ts: `<owner>/<repo>.git`, `refs/autobuilder/<sha>`), for retention: without
 * deleting them, no `git gc` could ever reclaim a commit a build fetched.
 */
export interface MirrorRefs {
  /** The repositories that have a mirror. */
  repositories(): Promise<{ owner: string; repo: string }[]>;
  /** The shas that have a `refs/autobuilder/<sha>` in the mirror of `owner/repo` (none when there is no mirror). */
  fetched(owner: string, repo: string): Promise<string[]>;
  /**
   * Deletes `refs/autobuilder/<sha>` of each sha (`git update-ref -d`; a missing ref is no error).
   * @throws AppError `GIT_FAILED` naming the ref that could not be deleted
   */
  remove(owner: string, repo: string, shas: readonly string[]): Promise<void>;
}

/** Creates the mirror ref manager over `mirrorsDir` (`<dataDir>/git`). */
export function createMirrorRefs(options: { mirrorsDir: string }): MirrorRefs {
  const mirrorOf = (owner: string, repo: string) => join(options.mirrorsDir, toPathSegment(owner), `${toPathSegment(repo)}.git`);
  // the mirror is ours, but hooks (reference-transaction) stay off whatever its config says
  const git = (dir: string): SimpleGit => createHardenedGit({ baseDir: dir });
  const dirs = async (dir: string) =>
    (await readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err)))).filter((e) =>
      e.isDirectory(),
    );

  return {
    async repositories() {
      const found: { owner: string; repo: string }[] = [];
      for (const owner of await dirs(options.mirrorsDir)) {
        for (const repo of await dirs(join(options.mirrorsDir, owner.name))) {
          if (repo.name.endsWith('.git')) found.push({ owner: decodeURIComponent(owner.name), repo: decodeURIComponent(repo.name.slice(0, -'.git'.length)) });
        }
      }
      return found;
    },
    async fetched(owner, repo) {
      const dir = mirrorOf(owner, repo);
      if ((await dirs(dir)).length === 0) return [];
      const out = await git(dir).raw(['for-each-ref', '--format=%(refname)', PREFIX]);
      return out
        .split('\n')
        .filter((line) => line.startsWith(PREFIX))
        .map((line) => line.slice(PREFIX.length))
        .filter(isSha);
    },
    async remove(owner, repo, shas) {
      const dir = mirrorOf(owner, repo);
      for (const sha of shas) {
        if (!isSha(sha)) continue;
        try {
          await git(dir).raw(['update-ref', '-d', `${PREFIX}${sha}`]);
        } catch (err) {
          throw new AppError('GIT_FAILED', `cannot delete ${PREFIX}${sha} in the mirror of ${owner}/${repo}: ${toMessage(err).trim()}`, { cause: err });
        }
      }
    },
  };
}
