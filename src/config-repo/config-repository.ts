import { watch, type FSWatcher } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { SimpleGit } from 'simple-git';
import { parseRef } from '../builds/refs.js';
import { AppError, toMessage } from '../errors.js';
import { createHardenedGit } from '../git/hardened-git.js';
import { withoutCredentials } from '../git/without-credentials.js';
import type { Logger } from '../logger.js';
import { buildSnapshot, indexSnapshot, type ConfigSnapshot, type DefinitionLookup, type ParseCache, type SnapshotIndex } from './config-snapshot.js';
import type { DefinitionProblem } from './definition-error.js';
import type { ContextLimits, ContextListing } from '../images/build-context.js';
import { listGitContext, readDirectoryContext } from '../images/git-context.js';
import { readGitBlobs } from '../git/read-git-blobs.js';
import { readDirectoryRevision, readGitRevision, type Revision } from './read-revision.js';

export type { DefinitionLookup, ConfigSnapshot, MatchCandidate } from './config-snapshot.js';

/**
 * Where the config repository comes from: a local directory (a file watcher and the poll
 * pick up changes), or a git URL fetched into the bare repository `gitDir` (a push webhook
 * of the config repository and the poll pick up changes). `repository` is its GitHub
 * `owner/name`, when it has one: pushes to it reload the config, and refused revisions get
 * an `autobuilder/config` commit status there.
 */
export type ConfigRepositorySource =
  | { kind: 'directory'; path: string; repository?: string | undefined }
  | { kind: 'git'; url: string; branch: string; gitDir: string; repository?: string | undefined; env?: GitEnvironment | undefined };

/**
 * The environment git fetches a config repository with: fixed, or made afresh for each fetch
 * (a GitHub App's installation token expires within the hour, so it is asked for each time).
 */
export type GitEnvironment = Readonly<Record<string, string>> | (() => Promise<Readonly<Record<string, string>>>);

/** What made a reload happen. */
export type ReloadTrigger = 'start' | 'webhook' | 'watch' | 'poll' | 'api';

/** The outcome of one reload. `unchanged`: same definitions as the active snapshot; `failed`: the revision could not be read. */
export interface ReloadOutcome {
  outcome: 'activated' | 'unchanged' | 'rejected' | 'failed';
  trigger: ReloadTrigger;
  /** the revision read; null in plain-directory mode, or when reading failed */
  sha: string | null;
  at: string;
  durationMs: number;
  /** for `rejected` and `failed`: every problem found */
  problems: DefinitionProblem[];
}

/** What `GET /api/config` shows: the active snapshot, the last refused revision, the last reload. */
export interface ConfigStatus {
  source: { kind: 'directory'; path: string; repository: string | null } | { kind: 'git'; url: string; branch: string; repository: string | null };
  /** null until a first valid revision was read */
  active: ConfigSnapshot | null;
  /** the last revision refused (or that failed to be read) since the active one, with its problems; null when none */
  lastErrors: { sha: string | null; at: string; trigger: ReloadTrigger; problems: DefinitionProblem[] } | null;
  lastReload: ReloadOutcome | null;
}

/** The config repository: per-branch build definitions at `<owner>/<repo>/<branch>.yaml`, held as an immutable snapshot. */
export interface ConfigRepository {
  /**
   * Reads the current revision and activates it when it is valid and differs from the
   * active one; refuses it whole when one file is invalid (the active snapshot stays).
   * Reloads run one at a time; calls made during one share the next. Never throws.
   */
  reload(trigger: ReloadTrigger): Promise<ReloadOutcome>;
  /** The first reload (`start`); kept for callers that only need the definitions read. */
  refresh(): Promise<void>;
  /**
   * Finds the build definitions for a push of `ref` to `owner/repo` in the active snapshot
   * (see {@link indexSnapshot} for the precedence). With no valid revision yet, nothing matches.
   * @throws AppError `DEFINITION_INVALID` when two matching files define the same build name
   * @throws AppError `UNSAFE_INPUT` for names or refs that cannot be a repository or a ref
   */
  lookup(input: { owner: string; repo: string; ref: string }): Promise<DefinitionLookup>;
  /** The active snapshot, the last errors and the last reload. */
  status(): ConfigStatus;
  /** `owner/repo` of every repository with definitions in the active snapshot. */
  repositories(): readonly string[];
  /**
   * The files under `dir` of the config repository with their contents, as the context of an
   * image build (`dockerfile: config:…`): in git mode at commit `sha` (the revision the
   * definitions were read at), in directory mode as the directory holds them now. The listing
   * stops past `limits` and says so, as it does for a directory that is not there.
   * @throws AppError `GIT_FAILED` when git fails; `NOT_FOUND` in git mode without a `sha`
   */
  readContext(input: { sha: string | null; dir: string; limits: ContextLimits }): Promise<ContextListing & { contents: Map<string, Buffer> }>;
  /**
   * True when a `push` payload is a push to the config repository's branch: its
   * `repository.full_name` is the configured `repository` (compared case-insensitively).
   */
  isConfigPush(payload: unknown): boolean;
  /** Calls `listener` after every reload that activated or refused a revision. */
  onReload(listener: (outcome: ReloadOutcome, status: ConfigStatus) => void): void;
  /** Starts the poll every `pollSeconds` (0: none) and, in directory mode, the file watcher. */
  watch(options: { pollSeconds: number; debounceMs?: number }): void;
  /** Stops the watcher and the poll; waits for a reload in progress. */
  close(): Promise<void>;
}

/** `https://github.com/Acme/Config.git`, `git@github.com:acme/config` → `acme/config`; null when not recognisable. */
export function repositoryOfUrl(url: string): string | null {
  const m = /[/:]([A-Za-z0-9_.-]+)\/([A-Za-z0-9_.-]+?)(?:\.git)?\/?$/.exec(url);
  return m === null ? null : `${m[1]}/${m[2]}`.toLowerCase();
}

/**
 * Creates the config repository. Nothing is read until the first {@link ConfigRepository.reload}.
 * In git mode `gitDir` is created as a bare repository on the first reload and fetched into
 * (`+refs/heads/<branch>`) on every later one; `env` is the environment git runs with
 * (e.g. an `http.extraHeader` with a token, given as `GIT_CONFIG_*`), or, a function, the
 * environment of each fetch, called before it (git's other commands then run without one).
 */
export function createConfigRepository(options: { source: ConfigRepositorySource; log: Logger; now?: () => Date }): ConfigRepository {
  const { source, log } = options;
  const now = options.now ?? (() => new Date());
  const repository = source.repository?.toLowerCase() ?? null;
  if (source.kind === 'git') {
    parseRef(`refs/heads/${source.branch}`);
    if (source.url.startsWith('-')) throw new AppError('CONFIG_INVALID', 'configRepository.url may not start with "-"');
  }
  const root = source.kind === 'directory' ? resolve(source.path) : resolve(source.gitDir);
  let index: SnapshotIndex | null = null;
  let lastErrors: ConfigStatus['lastErrors'] = null;
  let lastReload: ReloadOutcome | null = null;
  let parseCache: ParseCache = new Map();
  const listeners: ((outcome: ReloadOutcome, status: ConfigStatus) => void)[] = [];

  const fixedEnv = source.kind === 'git' && typeof source.env !== 'function' ? source.env : source.kind === 'git' ? {} : undefined;
  const git = (env = fixedEnv): SimpleGit => createHardenedGit({ baseDir: root, env });

  async function readRevision(): Promise<Revision> {
    if (source.kind === 'directory') {
      const sha = await stat(join(root, '.git')).then(
        () =>
          git()
            .revparse(['HEAD'])
            .then(
              (s) => s.trim(),
              () => null,
            ),
        () => null,
      );
      return { sha, files: await readDirectoryRevision(root) };
    }
    try {
      await stat(join(root, 'HEAD'));
    } catch {
      await mkdir(root, { recursive: true });
      await git().raw(['init', '--bare', '--quiet']);
    }
    const ref = `refs/heads/${source.branch}`;
    const fetchEnv = typeof source.env === 'function' ? await source.env() : fixedEnv;
    await git(fetchEnv).raw(['fetch', '--quiet', '--force', '--no-tags', '--', source.url, `+${ref}:${ref}`]);
    const sha = (await git().raw(['rev-parse', '--verify', '--end-of-options', `${ref}^{commit}`])).trim();
    return { sha, files: await readGitRevision(git(), root, sha) };
  }

  const status = (): ConfigStatus => ({
    source:
      source.kind === 'directory'
        ? { kind: 'directory', path: root, repository }
        : { kind: 'git', url: withoutCredentials(source.url), branch: source.branch, repository },
    active: index?.snapshot ?? null,
    lastErrors,
    lastReload,
  });

  async function load(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    const started = performance.now();
    const done = (outcome: ReloadOutcome['outcome'], sha: string | null, problems: DefinitionProblem[] = []): ReloadOutcome => ({
      outcome,
      trigger,
      sha,
      at: now().toISOString(),
      durationMs: Math.round((performance.now() - started) * 10) / 10,
      problems,
    });
    let revision: Revision;
    try {
      revision = await readRevision();
    } catch (err) {
      const message = withoutCredentials(toMessage(err).trim().split('\n').slice(-2).join(' '));
      const outcome = done('failed', null, [{ file: '', line: null, key: '', message: `the config repository could not be read: ${message}` }]);
      lastErrors = { sha: null, at: outcome.at, trigger, problems: outcome.problems };
      log.error({ trigger, err: outcome.problems[0]?.message }, 'config repository could not be read; the active definitions stay');
      return outcome;
    }
    const active = index?.snapshot ?? null;
    // a revision refused before is not parsed and reported again on every poll
    if (source.kind === 'git' && lastErrors !== null && lastErrors.sha === revision.sha && trigger !== 'start')
      return done('unchanged', revision.sha, lastErrors.problems);
    const built = buildSnapshot(revision.sha, revision.files, now(), parseCache);
    parseCache = built.cache;
    if (built.snapshot === null) {
      const outcome = done('rejected', revision.sha, built.problems);
      lastErrors = { sha: revision.sha, at: outcome.at, trigger, problems: built.problems };
      log.error({ trigger, sha: revision.sha, problems: built.problems.slice(0, 20) }, 'config revision refused; the last good definitions stay active');
      return outcome;
    }
    if (active !== null && active.digest === built.snapshot.digest && active.sha === built.snapshot.sha) return done('unchanged', revision.sha);
    index = indexSnapshot(built.snapshot);
    lastErrors = null;
    const outcome = done('activated', revision.sha);
    log.info(
      { trigger, sha: revision.sha, files: built.snapshot.files.length, repositories: built.snapshot.repositories.length, ms: outcome.durationMs },
      'config revision activated',
    );
    return outcome;
  }

  // one reload at a time; calls during one share the next
  let running: Promise<ReloadOutcome> | null = null;
  let next: Promise<ReloadOutcome> | null = null;
  const reload = (trigger: ReloadTrigger): Promise<ReloadOutcome> => {
    if (next !== null) return next;
    const start = (): Promise<ReloadOutcome> => {
      running = load(trigger)
        .catch((err: unknown): ReloadOutcome => {
          // never expected (load reports what it can); the active snapshot stays whatever went wrong
          log.error({ trigger, err: toMessage(err) }, 'config reload failed');
          const problems = [{ file: '', line: null, key: '', message: `internal error: ${toMessage(err)}` }];
          return { outcome: 'failed', trigger, sha: null, at: now().toISOString(), durationMs: 0, problems };
        })
        .then((outcome) => {
          lastReload = outcome;
          if (outcome.outcome === 'unchanged') return outcome;
          for (const listener of listeners) {
            try {
              listener(outcome, status());
            } catch (err) {
              log.error({ err: toMessage(err) }, 'a config reload listener failed');
            }
          }
          return outcome;
        })
        .finally(() => {
          running = null;
        });
      return running;
    };
    if (running === null) return start();
    next = running.then(
      () => ((next = null), start()),
      () => ((next = null), start()),
    );
    return next;
  };

  let watcher: FSWatcher | null = null;
  let pollTimer: NodeJS.Timeout | undefined;
  let debounce: NodeJS.Timeout | undefined;

  return {
    reload,
    async refresh() {
      await reload('start');
    },
    async lookup(input) {
      if (index === null) {
        return {
          definitions: [],
          configSha: null,
          file: null,
          candidates: [],
          reason: 'the config repository has no valid revision yet (see GET /api/config)',
        };
      }
      return index.lookup(input);
    },
    status,
    repositories: () => index?.snapshot.repositories ?? [],
    async readContext({ sha, dir, limits }) {
      if (source.kind === 'directory') return readDirectoryContext(root, dir, limits);
      if (sha === null) throw new AppError('NOT_FOUND', 'no revision of the config repository to read a Dockerfile from', { status: 404 });
      const listing = await listGitContext(root, sha, dir, limits);
      if (listing.problem !== null) return { ...listing, contents: new Map() };
      const blobs = await readGitBlobs(
        root,
        listing.files.map((f) => f.id),
      );
      return { ...listing, contents: new Map(listing.files.map((f) => [f.path, blobs.get(f.id) ?? Buffer.alloc(0)])) };
    },
    isConfigPush(payload) {
      if (typeof payload !== 'object' || payload === null) return false;
      const p = payload as { ref?: unknown; repository?: unknown };
      const branch = source.kind === 'git' ? source.branch : null;
      if (branch !== null && p.ref !== `refs/heads/${branch}`) return false;
      if (typeof p.ref !== 'string' || !p.ref.startsWith('refs/heads/')) return false;
      const r = p.repository;
      if (typeof r !== 'object' || r === null) return false;
      const name = 'full_name' in r ? r.full_name : undefined;
      return repository !== null && typeof name === 'string' && name.toLowerCase() === repository;
    },
    onReload(listener) {
      listeners.push(listener);
    },
    watch({ pollSeconds, debounceMs = 200 }) {
      if (pollSeconds > 0) pollTimer = setInterval(() => void reload('poll'), pollSeconds * 1000).unref();
      if (source.kind !== 'directory') return;
      try {
        watcher = watch(root, { recursive: true }, (_event, filename) => {
          // the work tree's own .git changes on every commit; the files are what count
          if (typeof filename === 'string' && (filename === '.git' || filename.startsWith('.git/'))) return;
          clearTimeout(debounce);
          debounce = setTimeout(() => void reload('watch'), debounceMs);
        });
        watcher.on('error', (err) => log.warn({ err: toMessage(err) }, 'config directory watcher failed; the poll still picks up changes'));
      } catch (err) {
        log.warn({ err: toMessage(err) }, 'config directory cannot be watched; the poll picks up changes');
      }
    },
    async close() {
      clearInterval(pollTimer);
      clearTimeout(debounce);
      watcher?.close();
      watcher = null;
      await (next ?? running)?.catch(() => undefined);
    },
  };
}
