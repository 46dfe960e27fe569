import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { GitPluginError, type SimpleGit } from 'simple-git';
import { AppError, toMessage } from '../errors.js';
import { createHardenedGit } from '../git/hardened-git.js';
import type { ContextLimits, ContextListing } from '../images/build-context.js';
import { listGitContext } from '../images/git-context.js';
import { readGitBlobs } from '../git/read-git-blobs.js';
import { withoutCredentials } from '../git/without-credentials.js';
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
    throw new AppError('UNSAFE_INPUT', withoutCredentials(`refusing to fetch from ${JSON.stringify(result.slice(0, 200))}`), { status: 400 });
  }
  return result;
}

/**
 * The host git repositories are fetched from for a GitHub API base URL: `github.com` for
 * `https://api.github.com`, else the API's own host (GitHub Enterprise Server).
 */
export function toGitHost(apiUrl: string): string {
  const host = new URL(apiUrl).host;
  return host === 'api.github.com' ? 'github.com' : host;
}

/**
 * Fetches commits into per-repository mirrors and checks trees out into workspaces. Every
 * git process is stopped when it goes without output for the checkout's timeout, or when
 * the call's `signal` aborts (the build was cancelled); the call then throws `GIT_FAILED`.
 * Error messages never carry the user or password of a URL (a `cloneUrlRewrites` target may
 * hold a token): they reach build descriptions, logs and commit statuses.
 */
export interface Checkout {
  /**
   * Makes commit `sha` of `cloneUrl` present in the repository's mirror (no network when it
   * already is) and returns its tree id and the blob ids of `paths` at that commit (null for
   * a path that is not a file there).
   * @throws AppError `GIT_FAILED` when the fetch fails or `sha` is not a commit there
   */
  fetch(input: {
    owner: string;
    repo: string;
    cloneUrl: string;
    sha: string;
    paths: readonly string[];
    signal?: AbortSignal | undefined;
    /** the credential for this fetch, over the checkout's own (a worker gets its build's from the server) */
    token?: { value: string; host: string } | undefined;
  }): Promise<{ tree: string; blobs: (string | null)[] }>;
  /**
   * The commit `ref` points at in the repository at `cloneUrl` (`git ls-remote`); an
   * annotated tag is peeled to its commit, never answered with the tag object.
   * @throws AppError `NOT_FOUND` (404) when there is no such ref, `GIT_FAILED` otherwise
   */
  resolveRef(input: { cloneUrl: string; ref: string; signal?: AbortSignal | undefined }): Promise<string>;
  /**
   * When tree `tree` is in the repository's mirror already, the blob ids of `paths` in it
   * (null for a path that is not a file there); null when the tree is not there. Never
   * touches the network: this is how a cache hit is decided without fetching.
   */
  inspectTree(input: { owner: string; repo: string; tree: string; paths: readonly string[] }): Promise<(string | null)[] | null>;
  /**
   * Checks commit `sha` (fetched before) out into `<workspace>/src`, keeping untracked
   * files of an earlier build (incremental builds) and replacing tracked ones.
   * @throws AppError `GIT_FAILED`
   */
  checkout(input: { owner: string; repo: string; sha: string; workspace: string; signal?: AbortSignal | undefined }): Promise<{ dir: string }>;
  /**
   * The files under `dir` of tree-ish `treeish` (fetched before) in the repository's mirror,
   * recursively, as an image build's context (see `listGitContext`); the listing stops past
   * `limits` and says so. Never touches the network.
   * @throws AppError `GIT_FAILED`
   */
  listContext(input: { owner: string; repo: string; treeish: string; dir: string; limits: ContextLimits }): Promise<ContextListing>;
  /**
   * The contents of blobs `ids` (from {@link Checkout.listContext}) of the repository's mirror, by id.
   * @throws AppError `GIT_FAILED`
   */
  readBlobs(input: { owner: string; repo: string; ids: readonly string[] }): Promise<Map<string, Buffer>>;
}

/** Tree reads remembered by {@link Checkout.inspectTree}. */
const TREE_MEMO_ENTRIES = 1000;

/**
 * Where git's credential for the GitHub host comes from: one token per repository, asked for
 * at each fetch (a GitHub App's installation tokens expire within the hour; see GitHubAuth.gitTokenFor).
 * `tokenFor` rejects when there is none for the repository (e.g. the App is not installed there).
 */
export interface GitCredentials {
  /** the GitHub host (`github.com`, a GHES host): only https URLs of this host get a token */
  host: string;
  tokenFor(repository: string): Promise<string | undefined>;
}

/**
 * The `owner/name` a clone URL of `host` names (`https://<host>/<owner>/<name>[.git]`), or null
 * for any other URL (another host, another scheme, another path).
 */
export function toRepositoryOfUrl(url: string, host: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  if (parsed.protocol !== 'https:' || parsed.host !== host) return null;
  const match = /^\/([A-Za-z0-9_.-]+)\/([A-Za-z0-9_.-]+?)(?:\.git)?\/?$/.exec(parsed.pathname);
  return match === null ? null : `${match[1]}/${match[2]}`;
}

/**
 * git's environment for fetching `url` with `credentials`: a token of the repository the URL
 * names when it is an https URL of the credentials' host (see {@link gitAuthEnv}), asked for
 * now, so that it is fresh; `{}` for any other URL, without asking. When no token can be had
 * the fetch goes without (a public repository still works) and `problem` says why.
 */
export async function gitAuthEnvFor(url: string, credentials: GitCredentials | undefined): Promise<{ env: Record<string, string>; problem: string | null }> {
  const repository = credentials === undefined ? null : toRepositoryOfUrl(url, credentials.host);
  if (credentials === undefined || repository === null) return { env: {}, problem: null };
  try {
    const token = await credentials.tokenFor(repository);
    return { env: gitAuthEnv(url, token === undefined ? undefined : { value: token, host: credentials.host }), problem: null };
  } catch (err) {
    return { env: {}, problem: `no GitHub token for ${repository}: ${toMessage(err)}` };
  }
}

/**
 * For an https URL of the token's host: the token as an `Authorization` header, given to
 * git through its environment (`GIT_CONFIG_*`), so it is never in a URL, a process
 * argument or a log; any other URL gets `{}` and never sees it.
 */
export function gitAuthEnv(url: string, token: { value: string; host: string } | undefined): Record<string, string> {
  if (token === undefined || !url.startsWith('https://') || new URL(url).host !== token.host) return {};
  return {
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'http.extraHeader',
    GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`x-access-token:${token.value}`).toString('base64')}`,
  };
}

/**
 * Creates the checkout service. git's credential for the GitHub host is `credentials` (a token
 * per repository, asked for at each fetch and ls-remote), or the one `token`. Git objects live in bare mirrors at
 * `<mirrorsDir>/<owner>/<repo>.git`, outside every workspace: a build can write anything
 * in its workspace, and a `.git/config` there (hooks, `core.fsmonitor`) would otherwise run
 * on the host at the next checkout. The index sits beside `src/`, not inside it, so the
 * container never sees it. Fetches into one mirror are serialised.
 */
export function createCheckout(options: {
  mirrorsDir: string;
  token?: { value: string; host: string };
  /** per-repository tokens, over `token` */
  credentials?: GitCredentials | undefined;
  /** ms a git process may go without output before it is stopped (a remote that accepts and never answers); default 10 minutes */
  timeoutMs?: number;
}): Checkout {
  const serial = createSerializeByKey();
  const timeoutMs = options.timeoutMs ?? 600_000;
  const fixed = options.token;
  const credentials: GitCredentials | undefined =
    options.credentials ?? (fixed === undefined ? undefined : { host: fixed.host, tokenFor: () => Promise.resolve(fixed.value) });
  const authFor = (url: string) => gitAuthEnvFor(url, credentials);
  const git = (baseDir?: string, env?: Record<string, string>, signal?: AbortSignal): SimpleGit => createHardenedGit({ baseDir, env, signal, timeoutMs });

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

  /** Blob ids of `paths` in tree-ish `treeish` of `mirror` (null for a path that is not a file). */
  async function blobsIn(mirror: string, treeish: string, paths: readonly string[]): Promise<(string | null)[]> {
    if (paths.length === 0) return [];
    // one ls-tree for every path: "<mode> <type> <id>\t<path>" NUL-terminated, nothing for a missing path
    const listing = await git(mirror).raw(['ls-tree', '-z', treeish, '--', ...paths]);
    const found = new Map<string, string>();
    for (const entry of listing.split('\0')) {
      const match = /^\d+ blob ([0-9a-f]{40,64})\t(.*)$/s.exec(entry);
      if (match?.[1] !== undefined && match[2] !== undefined) found.set(match[2], match[1]);
    }
    return paths.map((path) => found.get(path) ?? null);
  }

  /**
   * Blobs of trees read before, by mirror, tree id and paths: a tree id fixes its content,
   * so an answer never changes (most recent {@link TREE_MEMO_ENTRIES} kept). A cache decision
   * for a tree already read starts no git process.
   */
  const treeMemo = new Map<string, (string | null)[]>();

  const gitFailed = (what: string, err: unknown, problem: string | null = null): AppError => {
    if (err instanceof AppError) return err;
    const why =
      err instanceof GitPluginError && err.plugin === 'timeout'
        ? `no answer for ${Math.round(timeoutMs / 1000)} s (builds.gitTimeoutSeconds)`
        : err instanceof GitPluginError && err.plugin === 'abort'
          ? 'stopped (the build was cancelled)'
          : toMessage(err).trim().split('\n').slice(-3).join(' ');
    // git's stderr and our own message name the URL, maybe with a token in it
    return new AppError('GIT_FAILED', withoutCredentials(`${what}: ${why}${problem === null ? '' : ` (${problem})`}`), { cause: err });
  };
  /** `work` once the mirror's lock is ours, or an abort of `signal` while waiting for it. */
  const whenFree = <T>(mirror: string, signal: AbortSignal | undefined, work: () => Promise<T>): Promise<T> => {
    const locked = serial(mirror, work);
    if (signal === undefined) return locked;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(new GitPluginError(undefined, 'abort', 'Abort signal received'));
      if (signal.aborted) onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      locked.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  };

  return {
    async fetch({ owner, repo, cloneUrl, sha, paths, signal, token }) {
      if (!isSha(sha)) throw new AppError('UNSAFE_INPUT', `not a commit sha: ${JSON.stringify(sha.slice(0, 80))}`, { status: 400 });
      let problem: string | null = null;
      try {
        const mirror = await ensureMirror(owner, repo);
        await whenFree(mirror, signal, async () => {
          const present = await git(mirror)
            .raw(['cat-file', '-t', sha])
            .then(
              (t) => t.trim() === 'commit',
              () => false,
            );
          if (!present) {
            const auth = token === undefined ? await authFor(cloneUrl) : { env: gitAuthEnv(cloneUrl, token), problem: null };
            problem = auth.problem;
            await git(mirror, auth.env, signal).raw([
              'fetch',
              '--quiet',
              '--no-tags',
              '--no-write-fetch-head',
              '--',
              cloneUrl,
              `+${sha}:refs/autobuilder/${sha}`,
            ]);
          }
        });
        const tree = (await git(mirror).raw(['rev-parse', '--verify', `${sha}^{tree}`])).trim();
        return { tree, blobs: await blobsIn(mirror, tree, paths) };
      } catch (err) {
        throw gitFailed(`cannot fetch ${sha} from ${cloneUrl}`, err, problem);
      }
    },
    async resolveRef({ cloneUrl, ref, signal }) {
      let out: string;
      const auth = await authFor(cloneUrl);
      try {
        // `<ref>^{}` lists the commit an annotated tag points at; a branch has no such line
        out = await git(undefined, auth.env, signal).raw(['ls-remote', '--', cloneUrl, ref, `${ref}^{}`]);
      } catch (err) {
        throw gitFailed(`cannot list refs of ${cloneUrl}`, err, auth.problem);
      }
      const lines = out.split('\n');
      const line = lines.find((l) => l.endsWith(`\t${ref}^{}`)) ?? lines.find((l) => l.endsWith(`\t${ref}`));
      const sha = line?.split('\t')[0];
      if (sha === undefined || !isSha(sha)) throw new AppError('NOT_FOUND', withoutCredentials(`${ref} does not exist in ${cloneUrl}`), { status: 404 });
      return sha;
    },
    async inspectTree({ owner, repo, tree, paths }) {
      if (!isSha(tree)) return null;
      const mirror = await ensureMirror(owner, repo);
      const key = `${mirror}\n${tree}\n${paths.join('\0')}`;
      const known = treeMemo.get(key);
      if (known !== undefined) return [...known];
      let blobs: (string | null)[];
      try {
        blobs = await blobsIn(mirror, tree, paths);
      } catch {
        // not in the mirror (yet): the caller decides without it
        return null;
      }
      treeMemo.set(key, blobs);
      if (treeMemo.size > TREE_MEMO_ENTRIES) treeMemo.delete(treeMemo.keys().next().value as string);
      return [...blobs];
    },
    async listContext({ owner, repo, treeish, dir, limits }) {
      if (!isSha(treeish)) throw new AppError('UNSAFE_INPUT', `not a tree id: ${JSON.stringify(treeish.slice(0, 80))}`, { status: 400 });
      return listGitContext(await ensureMirror(owner, repo), treeish, dir, limits);
    },
    async readBlobs({ owner, repo, ids }) {
      return readGitBlobs(await ensureMirror(owner, repo), ids);
    },
    async checkout({ owner, repo, sha, workspace, signal }) {
      if (!isSha(sha)) throw new AppError('UNSAFE_INPUT', `not a commit sha: ${JSON.stringify(sha.slice(0, 80))}`, { status: 400 });
      try {
        const mirror = await ensureMirror(owner, repo);
        const dir = join(workspace, 'src');
        await mkdir(dir, { recursive: true });
        const env = { GIT_DIR: mirror, GIT_WORK_TREE: dir, GIT_INDEX_FILE: join(workspace, 'index') };
        await git(dir, env, signal).raw(['read-tree', '--reset', '-u', sha]);
        return { dir };
      } catch (err) {
        throw gitFailed(`cannot check out ${sha}`, err);
      }
    },
  };
}
