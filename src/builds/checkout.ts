import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { simpleGit, type SimpleGit } from 'simple-git';
import { AppError, toMessage } from '../errors.js';
import { createSerializeByKey } from '../serialize-by-key.js';
import { toPathSegment } from '../snapshots/workspaces.js';
import { isSha } from './refs.js';

/** A clone-URL rewrite: a URL that starts with `from` gets that prefix replaced by `to`. */
export interface CloneUrlRewrite {
  from: string;
  to: string;
}

/**
 * Applies the first matching rewrite to `url` (mirrors, tests pointing at local
 * repositories) and checks the result is a URL or absolute path git may fetch from.
 * @throws AppError `UNSAFE_INPUT` for anything else (e.g. a leading `-`, `ext::`)
 */
export function toCloneUrl(url: string, rewrites: readonly CloneUrlRewrite[]): string {
  const rule = rewrites.find((r) => url.startsWith(r.from));
  const result = rule === undefined ? url : rule.to + url.slice(rule.from.length);
  if (!/^(https?|ssh|git|file):\/\/[^\s]+$|^\/[^\s]*$/.test(result)) {
    throw new AppError('UNSAFE_INPUT', `refusing to fetch from ${JSON.stringify(result.slice(0, 200))}`, { status: 400 });
  }
  return result;
}

/** Fetches commits into per-repository mirrors and checks trees out into workspaces. */
export interface Checkout {
  /**
   * Checks commit `sha` of `cloneUrl` out into `<workspace>/src`, keeping untracked files
   * of an earlier build (incremental builds) and replacing tracked ones. Returns the
   * commit's tree id.
   * @throws AppError `GIT_FAILED` when the fetch or checkout fails
   */
  checkout(input: { owner: string; repo: string; cloneUrl: string; sha: string; workspace: string }): Promise<{ tree: string; dir: string }>;
}

/**
 * Creates the checkout service. Git objects live in bare mirrors at
 * `<mirrorsDir>/<owner>/<repo>.git`, outside every workspace: a build can write anything
 * in its workspace, and a `.git/config` there (hooks, `core.fsmonitor`) would otherwise run
 * on the host at the next checkout. The index sits beside `src/`, not inside it, so the
 * container never sees it. Fetches into one mirror are serialised.
 */
export function createCheckout(options: { mirrorsDir: string }): Checkout {
  const serial = createSerializeByKey();
  const git = (baseDir?: string, env?: Record<string, string>): SimpleGit => {
    // Hooks off and no fsmonitor, whatever a repository says: simple-git guards these keys
    // because they can run programs; here they are set to values that run nothing.
    const g = simpleGit({
      ...(baseDir === undefined ? {} : { baseDir }),
      config: ['core.hooksPath=/dev/null', 'core.fsmonitor=false'],
      unsafe: { allowUnsafeHooksPath: true, allowUnsafeFsMonitor: true },
      // the work tree and index are set per call; the mirror is ours, never a workspace's
      allowEnvironment: ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE'],
    });
    return env === undefined ? g : g.env({ PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/', ...env });
  };

  async function ensureMirror(owner: string, repo: string): Promise<string> {
    const dir = join(options.mirrorsDir, toPathSegment(owner), `${toPathSegment(repo)}.git`);
    try {
      await stat(join(dir, 'HEAD'));
    } catch {
      await mkdir(dir, { recursive: true });
      await git(dir).raw(['init', '--bare', '--quiet']);
    }
    return dir;
  }

  return {
    async checkout({ owner, repo, cloneUrl, sha, workspace }) {
      if (!isSha(sha)) throw new AppError('UNSAFE_INPUT', `not a commit sha: ${JSON.stringify(sha.slice(0, 80))}`, { status: 400 });
      try {
        const mirror = await ensureMirror(owner, repo);
        await serial(mirror, async () => {
          const present = await git(mirror).raw(['cat-file', '-t', sha]).then((t) => t.trim() === 'commit', () => false);
          if (!present) await git(mirror).raw(['fetch', '--quiet', '--no-tags', '--no-write-fetch-head', '--', cloneUrl, `+${sha}:refs/autobuilder/${sha}`]);
        });
        const tree = (await git(mirror).raw(['rev-parse', `${sha}^{tree}`])).trim();
        const dir = join(workspace, 'src');
        await mkdir(dir, { recursive: true });
        const env = { GIT_DIR: mirror, GIT_WORK_TREE: dir, GIT_INDEX_FILE: join(workspace, 'index') };
        await git(dir, env).raw(['read-tree', '--reset', '-u', sha]);
        return { tree, dir };
      } catch (err) {
        if (err instanceof AppError) throw err;
        throw new AppError('GIT_FAILED', `cannot check out ${sha} from ${cloneUrl}: ${toMessage(err).trim().split('\n').slice(-3).join(' ')}`, { cause: err });
      }
    },
  };
}
