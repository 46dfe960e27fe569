import { simpleGit, type SimpleGit } from 'simple-git';

/**
 * The `GIT_*` variables git may be given through {@link HardenedGitOptions.env}: `GIT_DIR`,
 * `GIT_WORK_TREE` and `GIT_INDEX_FILE` point a checkout at a mirror and a workspace;
 * `GIT_CONFIG_COUNT`, `_KEY_0` and `_VALUE_0` carry only the token's `http.extraHeader` (see
 * `gitAuthEnv` in builds/checkout.ts), so the token is never in a URL, an argument or a log.
 */
const ALLOWED_ENVIRONMENT: readonly string[] = ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE', 'GIT_CONFIG_COUNT', 'GIT_CONFIG_KEY_0', 'GIT_CONFIG_VALUE_0'];

/** What one hardened git runs on; every field is optional. */
export interface HardenedGitOptions {
  /** the directory git runs in (a repository, a bare mirror or a work tree); default: the process's */
  baseDir?: string | undefined;
  /**
   * The environment to run git with. Given, git's whole environment is these plus the
   * server's `PATH` and `HOME`, nothing else of the server's, and a `GIT_*` variable other
   * than those of {@link ALLOWED_ENVIRONMENT} makes every call reject (simple-git's
   * environment guard). Absent, git inherits the server's environment without its `GIT_*`
   * variables (a `GIT_DIR`, `GIT_ASKPASS`, `GIT_SSH_COMMAND` or `GIT_CONFIG_*` of the host
   * never reaches it).
   */
  env?: Readonly<Record<string, string>> | undefined;
  /** stops the git process when it aborts (a cancelled build); the call then rejects with a `GitPluginError` of plugin `abort` */
  signal?: AbortSignal | undefined;
  /**
   * ms a git process may go without output before it is stopped (a remote that accepts and
   * never answers); the call then rejects with a `GitPluginError` of plugin `timeout`.
   * Default: no limit.
   */
  timeoutMs?: number | undefined;
}

/**
 * Creates a simple-git instance that is safe to run on repositories, remotes and workspaces a
 * build's author controls. Whatever a repository's own config says:
 * - `core.hooksPath=/dev/null`: no hook runs (a `post-checkout` or `reference-transaction`
 *   hook would be a program of the repository's choosing running on the host);
 * - `core.fsmonitor=false`: no file-system monitor runs (`core.fsmonitor` names a program git
 *   starts on a checkout or status; CVE-2022-24765 shows a planted repository config using it);
 * - with `timeoutMs`: simple-git stops a git process that goes that long without output, and
 *   `http.lowSpeedLimit=1` / `http.lowSpeedTime` make curl give up after as long without data,
 *   since stopping git does not stop the remote helper that does an http transfer;
 * - the environment is limited as {@link HardenedGitOptions.env} says.
 * simple-git refuses `core.hooksPath`, `core.fsmonitor` and `GIT_CONFIG_COUNT` unless told
 * otherwise (they can run programs or set any config); they are allowed here because the
 * values set here run nothing and the count only carries the token header.
 */
export function createHardenedGit(options: HardenedGitOptions = {}): SimpleGit {
  const { baseDir, env, signal, timeoutMs } = options;
  const config = ['core.hooksPath=/dev/null', 'core.fsmonitor=false'];
  if (timeoutMs !== undefined) config.push('http.lowSpeedLimit=1', `http.lowSpeedTime=${Math.max(1, Math.round(timeoutMs / 1000))}`);
  const git = simpleGit({
    ...(baseDir === undefined ? {} : { baseDir }),
    ...(signal === undefined ? {} : { abort: signal }),
    ...(timeoutMs === undefined ? {} : { timeout: { block: timeoutMs } }),
    config,
    unsafe: { allowUnsafeHooksPath: true, allowUnsafeFsMonitor: true, allowUnsafeConfigEnvCount: true },
    allowEnvironment: Object.keys(env ?? {}).filter((key) => ALLOWED_ENVIRONMENT.includes(key)),
  });
  return env === undefined ? git : git.env({ PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/', ...env });
}
