import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, constants, mkdtemp, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { statfsFreeBytes } from '../builds/disk-reserve.js';
import { buildSnapshot, type ConfigSnapshot } from '../config-repo/config-snapshot.js';
import { formatProblem, type DefinitionProblem } from '../config-repo/definition-error.js';
import { readDirectoryRevision } from '../config-repo/read-revision.js';
import { loadConfig } from '../config/load-config.js';
import { readConfigFile } from '../config/read-config-file.js';
import type { Config } from '../config/schema.js';
import { toMessage } from '../errors.js';
import { withoutCredentials } from '../git/without-credentials.js';
import { createLogger } from '../logger.js';
import { createDockerEngine, isEngineName, type DockerEngine } from '../runner/docker-engine.js';
import { isBtrfs } from '../snapshots/detect-driver.js';
import { createCliOutput, globalOptionsOf, type CliOutput } from './cli-context.js';
import { CliError, EXIT } from './exit-codes.js';

/** How one check of `doctor` came out: `warn` works but deserves a look; any `fail` fails the command. */
export type CheckOutcome = 'ok' | 'warn' | 'fail';

/** One row of the `doctor` table. */
export interface DoctorRow {
  /** what was checked, e.g. `docker engine` */
  check: string;
  result: CheckOutcome;
  /** what was found */
  detail: string;
  /** what to do about a `warn` or `fail`; null for `ok` */
  todo: string | null;
}

/** What `doctor` found: every row, and whether none failed. */
export interface DoctorReport {
  ok: boolean;
  /** the server config module read; null for the embedded defaults */
  configFile: string | null;
  rows: DoctorRow[];
}

/** Inputs of {@link runDoctor}: the server config module (as `npm start` finds it when not given), the Docker socket to use instead of `docker.socketPath`, seconds each check may take. */
export interface DoctorOptions {
  configFile?: string | undefined;
  socket?: string | undefined;
  timeoutSeconds?: number;
  env?: NodeJS.ProcessEnv;
}

const HOST_SETUP = 'run scripts/host-setup.sh as root';
const MiB = 1024 ** 2;

const row = (check: string, result: CheckOutcome, detail: string, todo: string | null = null): DoctorRow => ({ check, result, detail, todo });

/** Resolves with `work`, or with `onTimeout()` when it has not settled within `ms`; a rejection becomes a `fail` row of `check`. */
async function bounded(check: string, ms: number, work: () => Promise<DoctorRow>): Promise<DoctorRow> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<DoctorRow>((ok) => {
    timer = setTimeout(() => ok(row(check, 'fail', `no answer within ${ms / 1000} s`, 'see what blocks it; a longer --timeout if the host is only slow')), ms);
    timer.unref();
  });
  try {
    return await Promise.race([work().catch((err: unknown) => row(check, 'fail', toMessage(err), 'see the detail')), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The nearest existing directory at or above `path` (the data directory may not be made yet). */
async function nearestExisting(path: string): Promise<string> {
  let at = resolve(path);
  for (;;) {
    try {
      if ((await stat(at)).isDirectory()) return at;
    } catch {
      // not there: look higher
    }
    const up = dirname(at);
    if (up === at) return at;
    at = up;
  }
}

/** Why the engine could not be reached, in words, from a socket error. */
function socketProblem(socketPath: string, err: unknown): { detail: string; todo: string } {
  const code = (err as NodeJS.ErrnoException).code;
  const change = `or point --socket / docker.socketPath at the engine's socket`;
  if (code === 'ENOENT') {
    return {
      detail: `no socket at ${socketPath}`,
      todo: `start the Docker engine (scripts/host-setup.sh, run as root, installs and starts dockerd), ${change}`,
    };
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return { detail: `no permission to open ${socketPath}`, todo: "run the server as root or as a member of the socket's group (docker)" };
  }
  if (code === 'ECONNREFUSED') return { detail: `nothing listens on ${socketPath}`, todo: `start the Docker engine (dockerd), ${change}` };
  return { detail: `${socketPath}: ${toMessage(err)}`, todo: `start the Docker engine, ${change}` };
}

/** The engine's answer to `GET /_ping` and `/version`: its version, or the row that says why it does not answer. */
async function checkEngine(engine: DockerEngine, socketPath: string): Promise<DoctorRow> {
  let ping;
  try {
    ping = await engine.call('GET', '/_ping');
  } catch (err) {
    const { detail, todo } = socketProblem(socketPath, err);
    return row('docker engine', 'fail', detail, todo);
  }
  if (ping.status !== 200)
    return row('docker engine', 'fail', `${socketPath} answered /_ping with HTTP ${ping.status}`, "is that socket a Docker engine's? see the engine's log");
  const version = await engine.call('GET', '/version').catch(() => null);
  const body = (version?.body ?? {}) as { Version?: unknown; ApiVersion?: unknown };
  const named =
    typeof body.Version === 'string' ? `Docker ${body.Version}${typeof body.ApiVersion === 'string' ? ` (API ${body.ApiVersion})` : ''}` : 'a Docker engine';
  return row('docker engine', 'ok', `${named} answers at ${socketPath}`);
}

/** Which of `images` the engine has: the missing ones. */
async function missingImages(engine: DockerEngine, images: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const image of images) {
    if (!isEngineName(image)) {
      missing.push(image);
      continue;
    }
    const answer = await engine.call('GET', `/images/${image}/json`);
    if (answer.status === 404) missing.push(image);
    else if (answer.status !== 200) throw new Error(`the engine answered HTTP ${answer.status} for image ${image}`);
  }
  return missing;
}

/** The default image: builds without a `baseimage` run in it. */
async function checkDefaultImage(engine: DockerEngine, image: string): Promise<DoctorRow> {
  const missing = await missingImages(engine, [image]);
  if (missing.length === 0) return row('default image', 'ok', `${image} is present`);
  const todo =
    image === 'autobuilder/debian-build:bookworm' ? `${HOST_SETUP} (it makes ${image})` : `docker pull ${image} (or build it), or set docker.defaultImage`;
  return row('default image', 'fail', `${image} is not on the engine: builds without a baseimage end in error (images are never pulled by builds)`, todo);
}

/** The images the config repository's definitions name (`baseimage`). */
async function checkDefinitionImages(engine: DockerEngine, snapshot: ConfigSnapshot, defaultImage: string): Promise<DoctorRow> {
  const byImage = new Map<string, Set<string>>();
  for (const file of snapshot.files) {
    for (const d of file.definitions) {
      const image = d.baseimage ?? defaultImage;
      if (image === defaultImage) continue;
      byImage.set(image, (byImage.get(image) ?? new Set()).add(`autobuilder/${d.name}`));
    }
  }
  const images = [...byImage.keys()].sort();
  if (images.length === 0) return row('definition images', 'ok', 'the definitions use the default image only');
  const missing = await missingImages(engine, images);
  if (missing.length === 0) return row('definition images', 'ok', `all ${images.length} present: ${images.join(', ')}`);
  const detail = missing.map((image) => `${image} (${[...(byImage.get(image) ?? [])].sort().join(', ')})`).join('; ');
  return row(
    'definition images',
    'warn',
    `not on the engine, so these builds end in error: ${detail}`,
    `docker pull ${missing.join(' ')} (or build them), or change their baseimage`,
  );
}

/** The network build containers join (`docker.network`). */
async function checkNetwork(engine: DockerEngine, network: string): Promise<DoctorRow> {
  if (network === 'none') return row('build network', 'ok', 'none: builds have no network');
  if (network === 'host')
    return row(
      'build network',
      'warn',
      "host: builds share the host's network and reach everything it does",
      'use autobuilder-builds (made by scripts/host-setup.sh)',
    );
  if (network === 'bridge')
    return row(
      'build network',
      'warn',
      'bridge: builds reach the host and private networks',
      `use autobuilder-builds (${HOST_SETUP}: it makes one cut off from them)`,
    );
  const answer = await engine.call('GET', `/networks/${network}`);
  if (answer.status === 200) return row('build network', 'ok', `${network} exists`);
  if (answer.status === 404) {
    const todo = network === 'autobuilder-builds' ? `${HOST_SETUP} (it creates autobuilder-builds)` : `docker network create ${network}, or set docker.network`;
    return row('build network', 'fail', `${network} does not exist: every build would end in error`, todo);
  }
  throw new Error(`the engine answered HTTP ${answer.status} for network ${network}`);
}

/** Where snapshots go: Btrfs under the data directory, or the copy driver. */
async function checkSnapshots(dataDir: string, wanted: Config['snapshotDriver'], quotaMiB: number): Promise<DoctorRow> {
  if (wanted === 'copy') return row('snapshots', 'ok', 'copy driver, as snapshotDriver says (workspaces are copied; no disk quotas)');
  const dir = await nearestExisting(join(dataDir, 'workspaces'));
  const btrfs = await isBtrfs(dir);
  if (btrfs) {
    const tool = await promisify(execFile)('btrfs', ['--version'], { timeout: 5000 }).then(
      ({ stdout }) => stdout.trim(),
      () => null,
    );
    if (tool === null) return row('snapshots', 'fail', `${dir} is on Btrfs but the btrfs command is missing`, 'install btrfs-progs');
    const quota = quotaMiB > 0 ? `a disk quota of ${quotaMiB} MiB per build (builds.diskQuotaMiB)` : 'no disk quota (builds.diskQuotaMiB: 0)';
    return row('snapshots', 'ok', `${dir} is on Btrfs (${tool}): workspaces are snapshots, ${quota}`);
  }
  if (wanted === 'btrfs')
    return row(
      'snapshots',
      'fail',
      `${dir} is not on Btrfs and snapshotDriver is btrfs: the server does not start`,
      `${HOST_SETUP} (it puts the data directory on Btrfs), or set snapshotDriver: 'copy'`,
    );
  return row(
    'snapshots',
    'warn',
    `${dir} is not on Btrfs: the copy fallback copies every workspace and cannot bound a build's disk use`,
    `${HOST_SETUP} (it puts the data directory on Btrfs)`,
  );
}

/** The data directory can be written (a file made and removed), or made when it does not exist yet. */
async function checkDataDir(dataDir: string): Promise<DoctorRow> {
  const exists = await stat(dataDir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!exists) {
    const parent = await nearestExisting(dataDir);
    return access(parent, constants.W_OK).then(
      () => row('data directory', 'ok', `${dataDir} does not exist yet; the server makes it (${parent} is writable)`),
      () =>
        row(
          'data directory',
          'fail',
          `${dataDir} does not exist and ${parent} is not writable`,
          `create ${dataDir} and give the server's user write access to it`,
        ),
    );
  }
  const probe = join(dataDir, `.doctor-${randomBytes(6).toString('hex')}`);
  try {
    await writeFile(probe, 'autobuilder doctor\n', { flag: 'wx' });
    await unlink(probe);
    return row('data directory', 'ok', `${dataDir} is writable`);
  } catch (err) {
    return row('data directory', 'fail', `${dataDir} cannot be written: ${toMessage(err)}`, `give the server's user write access to ${dataDir}`);
  }
}

/** The free space of the data volume against `builds.diskReserveMiB`. */
async function checkFreeSpace(dataDir: string, reserveMiB: number): Promise<DoctorRow> {
  const dir = await nearestExisting(dataDir);
  const freeMiB = Math.floor((await statfsFreeBytes(dir)) / MiB);
  const detail = `${freeMiB} MiB free on the volume of ${dir}, reserve ${reserveMiB} MiB (builds.diskReserveMiB)`;
  if (freeMiB < reserveMiB)
    return row(
      'free space',
      'fail',
      `${detail}: new builds would wait`,
      'free space on that volume (old builds go with retention), or lower builds.diskReserveMiB',
    );
  if (freeMiB < 2 * reserveMiB) return row('free space', 'warn', `${detail}: less than twice the reserve`, 'free space on that volume, or give it more');
  return row('free space', 'ok', detail);
}

/** Where the server's webhook secret comes from (never the secret itself). */
async function checkWebhookSecret(config: Readonly<Config>, dataDir: string, env: NodeJS.ProcessEnv): Promise<DoctorRow> {
  if (config.github.webhookSecret !== undefined) {
    const from = env['GITHUB_WEBHOOK_SECRET'] !== undefined && env['GITHUB_WEBHOOK_SECRET'] !== '' ? 'GITHUB_WEBHOOK_SECRET' : 'github.webhookSecret';
    return row('webhook secret', 'ok', `set (${from})`);
  }
  const file = join(dataDir, 'webhook-secret');
  try {
    if ((await readFile(file, 'utf8')).trim() !== '') return row('webhook secret', 'ok', `generated by the server, in ${file} (give GitHub the same)`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') return row('webhook secret', 'fail', `${file} cannot be read: ${toMessage(err)}`, `give the server's user read access to ${file}`);
  }
  return row(
    'webhook secret',
    'warn',
    `none set: the server generates one in ${file} at its first start`,
    'set GITHUB_WEBHOOK_SECRET (and the same secret on GitHub), or give GitHub the generated one',
  );
}

/** A summary of `problems` for one row: the first few as `file:line: key: message`. */
function summarize(problems: readonly DefinitionProblem[]): string {
  const shown = problems
    .slice(0, 3)
    .map((p) => (p.file === '' ? p.message : formatProblem(p)))
    .join('; ');
  return problems.length > 3 ? `${shown}; and ${problems.length - 3} more` : shown;
}

/** The config repository read and validated as the server would at start: its snapshot, or the row that says why not. */
async function checkConfigRepository(config: Readonly<Config>): Promise<{ row: DoctorRow; snapshot: ConfigSnapshot | null }> {
  const { url, repository, path, branch } = config.configRepository;
  if (url === undefined && repository === undefined) {
    const dir = resolve(path);
    const isDir = await stat(dir).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!isDir)
      return {
        row: row(
          'config repository',
          'fail',
          `${dir} is not a directory`,
          'set configRepository.path to a checkout of the config repository, or clone it there',
        ),
        snapshot: null,
      };
    const built = buildSnapshot(null, await readDirectoryRevision(dir));
    if (built.snapshot === null) {
      return {
        row: row(
          'config repository',
          'fail',
          `${dir}: ${built.problems.length} problem(s): ${summarize(built.problems)}`,
          `run autobuilder config check ${dir}, and fix what it lists`,
        ),
        snapshot: null,
      };
    }
    return { row: row('config repository', 'ok', describeSnapshot(dir, built.snapshot)), snapshot: built.snapshot };
  }
  // git mode: fetched as the server fetches it, into a bare repository of our own (the server's copy is left alone)
  const [{ toConfigRepositorySource }, { createConfigRepository }, { createGitHubAuth }] = await Promise.all([
    import('../server.js'),
    import('../config-repo/config-repository.js'),
    import('../github/create-github-auth.js'),
  ]);
  const silent = createLogger({ level: 'silent' });
  // a GitHub App's private config repository takes an installation token, as the server's fetch does
  const auth = config.github.app === undefined ? undefined : createGitHubAuth(config, { log: silent });
  const gitDir = await mkdtemp(join(tmpdir(), 'autobuilder-doctor-'));
  const source = { ...toConfigRepositorySource(config, auth), gitDir };
  const repo = createConfigRepository({ source, log: silent });
  const where = `${source.kind === 'git' ? withoutCredentials(source.url) : path} (${branch})`;
  try {
    const outcome = await repo.reload('api');
    const snapshot = repo.status().active;
    if (snapshot !== null) return { row: row('config repository', 'ok', describeSnapshot(where, snapshot)), snapshot };
    if (outcome.outcome === 'failed')
      return {
        row: row(
          'config repository',
          'fail',
          `${where} cannot be fetched: ${summarize(outcome.problems)}`,
          'check configRepository.url / repository and branch, and github.token or the GitHub App installation (its access to the repository)',
        ),
        snapshot: null,
      };
    return {
      row: row(
        'config repository',
        'fail',
        `${where}: ${outcome.problems.length} problem(s): ${summarize(outcome.problems)}`,
        'run autobuilder config check in a checkout of it, fix and push',
      ),
      snapshot: null,
    };
  } finally {
    await repo.close();
    auth?.close();
    await rm(gitDir, { recursive: true, force: true });
  }
}

function describeSnapshot(where: string, snapshot: ConfigSnapshot): string {
  const builds = snapshot.files.reduce((n, f) => n + f.definitions.length, 0);
  return `${where}: valid, ${snapshot.files.length} definition files, ${builds} builds, ${snapshot.repositories.length} repositor${snapshot.repositories.length === 1 ? 'y' : 'ies'}${snapshot.sha === null ? '' : ` at ${snapshot.sha.slice(0, 12)}`}`;
}

/**
 * Checks what a server host needs, each check within `timeoutSeconds` (default 10; the
 * config repository's fetch, in git mode, six times that): the server config, the Docker
 * engine, the default image and the definitions' images, the build network, Btrfs under the
 * data directory (or the copy fallback), the data directory writable, its free space, the
 * webhook secret, the config repository readable and valid. Reads only: nothing is made
 * but a probe file in the data directory, removed at once.
 */
export async function runDoctor(options: DoctorOptions = {}): Promise<DoctorReport> {
  const env = options.env ?? process.env;
  const ms = (options.timeoutSeconds ?? 10) * 1000;
  const rows: DoctorRow[] = [];
  let config: Readonly<Config>;
  let configFile: string | null = null;
  try {
    const read = await readConfigFile({ file: options.configFile, env });
    config = read.config;
    configFile = read.file;
    rows.push(row('server config', 'ok', read.file === null ? 'no ./config.ts: the embedded defaults' : `${read.file} is valid`));
  } catch (err) {
    rows.push(row('server config', 'fail', toMessage(err), 'fix the config module (see config.sample.ts); the checks below use the defaults'));
    config = loadConfig({}, env);
  }
  const dataDir = resolve(config.dataDir);
  const socketPath = options.socket ?? config.docker.socketPath;
  const engine = createDockerEngine({ socketPath });
  const local = config.dispatch.mode === 'local';
  // in bullmq mode builds run on the workers: the server host's own engine is not needed
  const forWorkers = (r: DoctorRow): DoctorRow =>
    local || r.result !== 'fail'
      ? r
      : { ...r, result: 'warn', detail: `${r.detail} (dispatch.mode bullmq: builds run on the workers; check each worker's host)` };

  const engineRow = await bounded('docker engine', ms, () => checkEngine(engine, socketPath));
  rows.push(forWorkers(engineRow));
  const engineUp = engineRow.result === 'ok';
  const skipped = (check: string) => row(check, 'fail', 'not checked: the Docker engine does not answer', 'see docker engine');
  rows.push(forWorkers(engineUp ? await bounded('default image', ms, () => checkDefaultImage(engine, config.docker.defaultImage)) : skipped('default image')));
  rows.push(forWorkers(engineUp ? await bounded('build network', ms, () => checkNetwork(engine, config.docker.network)) : skipped('build network')));
  rows.push(await bounded('snapshots', ms, () => checkSnapshots(dataDir, config.snapshotDriver, config.builds.diskQuotaMiB)));
  rows.push(await bounded('data directory', ms, () => checkDataDir(dataDir)));
  rows.push(await bounded('free space', ms, () => checkFreeSpace(dataDir, config.builds.diskReserveMiB)));
  rows.push(await bounded('webhook secret', ms, () => checkWebhookSecret(config, dataDir, env)));
  // the snapshot the config repository check read, for the images its definitions name
  const read: { snapshot: ConfigSnapshot | null } = { snapshot: null };
  rows.push(
    await bounded('config repository', ms * 6, async () => {
      const checked = await checkConfigRepository(config);
      read.snapshot = checked.snapshot;
      return checked.row;
    }),
  );
  const { snapshot } = read;
  if (snapshot !== null) {
    rows.push(
      forWorkers(
        engineUp
          ? await bounded('definition images', ms, () => checkDefinitionImages(engine, snapshot, config.docker.defaultImage))
          : skipped('definition images'),
      ),
    );
  }
  return { ok: rows.every((r) => r.result !== 'fail'), configFile, rows };
}

/** The report as a table: check, result, detail, and under a failing or warning row what to do; then a summary line. */
export function formatDoctorReport(report: DoctorReport, out: Pick<CliOutput, 'style'>): string {
  const { style } = out;
  const checkWidth = Math.max(5, ...report.rows.map((r) => r.check.length));
  const label = (r: DoctorRow) => (r.result === 'ok' ? style.green('ok  ') : r.result === 'warn' ? style.yellow('warn') : style.red('FAIL'));
  const lines = [style.bold(`${'CHECK'.padEnd(checkWidth)}  RESULT  DETAIL`)];
  for (const r of report.rows) {
    lines.push(`${r.check.padEnd(checkWidth)}  ${label(r)}    ${r.detail}`);
    if (r.todo !== null) lines.push(`${''.padEnd(checkWidth)}          ${style.dim('to do:')} ${r.todo}`);
  }
  const failed = report.rows.filter((r) => r.result === 'fail').map((r) => r.check);
  const warned = report.rows.filter((r) => r.result === 'warn').length;
  const warnings = warned === 0 ? '' : ` (${warned} warning${warned === 1 ? '' : 's'})`;
  lines.push(
    failed.length === 0
      ? style.green(`all checks pass${warnings}`)
      : style.red(`${failed.length} check${failed.length === 1 ? '' : 's'} fail: ${failed.join(', ')}${warnings}`),
  );
  return lines.join('\n');
}

/**
 * Adds `doctor` (see README, Command line): checks what a server host needs and prints a
 * table with what to do for each failure; exit 0 when none fails (warnings allowed), 1 otherwise.
 */
export function registerDoctorCommand(program: Command, env: NodeJS.ProcessEnv = process.env): void {
  program
    .command('doctor')
    .description(
      'check this host for the server: Docker engine, images, build network, Btrfs, data directory and its free space, webhook secret, config repository (run it where the server runs: relative paths of its config are read from here); exit 0 when nothing fails, 1 otherwise',
    )
    .option('--config <file>', "the server's config module (default: AUTOBUILDER_CONFIG or ./config.ts, as npm start)")
    .option('--socket <path>', "the Docker engine's socket (default: docker.socketPath of the config)")
    .option('--timeout <seconds>', 'seconds each check may take', '10')
    .action(async (options: { config?: string; socket?: string; timeout: string }, command: Command) => {
      const out = createCliOutput({ json: globalOptionsOf(command).json === true, env });
      const timeoutSeconds = Number(options.timeout);
      if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0)
        throw new CliError(EXIT.usage, `--timeout must be a positive number of seconds, not ${options.timeout}`);
      const report = await runDoctor({ configFile: options.config, socket: options.socket, timeoutSeconds, env });
      out.result(report, () => formatDoctorReport(report, out));
      if (!report.ok) process.exitCode = EXIT.buildFailed;
    });
}
