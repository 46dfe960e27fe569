import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { buildListSchema, type BuildViewAnswer } from './api-schemas.js';
import { assertArtifactFileName, saveArtifact, type SavedArtifact } from './artifact-download.js';
import { toBuildLine } from './build-format.js';
import { createProgressReporter, followBuilds, toBuildLabel, waitForBuilds } from './build-wait.js';
import { parseRefArgument, parseRepoArgument, parseShaArgument } from './cli-arguments.js';
import { createCliContext, type CliContext, type CliContextDeps } from './cli-context.js';
import { CliError, EXIT } from './exit-codes.js';

/**
 * Seconds the trigger itself waits (`POST /api/builds?wait=`): a build answered from the
 * cache, or one that ends that soon, needs no second request; longer builds are waited for
 * with long polls that say why they queue meanwhile.
 */
const TRIGGER_WAIT_SECONDS = 2;

/** An artifact `build --target` saved, with the build it came from. */
export interface DownloadedArtifact extends SavedArtifact {
  build: string;
  name: string;
}

/**
 * Downloads every artifact of the successful builds into `dir` (made when missing) as
 * `dir/<name>`, each verified against its sha256 (see saveArtifact). Two builds with an
 * artifact of the same name and different content are refused before anything is written.
 * @throws CliError (exit 3) on a digest mismatch or a broken download, (exit 2) when `dir` cannot be written or names collide
 */
export async function downloadArtifacts(ctx: CliContext, builds: readonly BuildViewAnswer[], dir: string): Promise<DownloadedArtifact[]> {
  const wanted = builds.filter((b) => b.state === 'success').flatMap((build) => build.artifacts.map((artifact) => ({ build, artifact })));
  const byName = new Map<string, string>();
  for (const { artifact } of wanted) {
    const seen = byName.get(artifact.name);
    if (seen !== undefined && seen !== artifact.digest) {
      throw new CliError(
        EXIT.usage,
        `two builds made an artifact ${JSON.stringify(artifact.name)} with different content; fetch each with autobuilder artifact get --build ID`,
      );
    }
    byName.set(assertArtifactFileName(artifact.name), artifact.digest);
  }
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new CliError(EXIT.usage, `cannot make the target directory ${dir}: ${(err as Error).message}`, { cause: err });
  }
  const saved: DownloadedArtifact[] = [];
  const done = new Set<string>();
  for (const { build, artifact } of wanted) {
    if (done.has(artifact.name)) continue;
    done.add(artifact.name);
    const response = await ctx.api.request(`/api/artifacts/${artifact.digest}`, { headers: { Accept: 'application/octet-stream' } });
    const file = await saveArtifact(response, join(dir, artifact.name), artifact.digest);
    ctx.out.note(`saved ${file.file} (${file.size} bytes, sha256:${file.digest} verified)`);
    saved.push({ ...file, build: build.id, name: artifact.name });
  }
  return saved;
}

/** The `build` command's options, as commander parses them. */
interface BuildOptions {
  repo: string;
  ref: string;
  sha?: string;
  force?: boolean;
  /** false with `--no-wait` */
  wait: boolean;
  follow?: boolean;
  target?: string;
  /** `--param NAME=VALUE`, repeated */
  param?: Record<string, string>;
}

/** Collects `--param NAME=VALUE` flags into one object (a later value of a name wins). */
function collectParam(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError('give a parameter as NAME=VALUE');
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}

/**
 * Adds `build`: triggers builds of a ref (`POST /api/builds`), waits for them (saying why they
 * queue), follows their logs with `--follow`, downloads and verifies their artifacts into
 * `--target`, and exits 0 when every build succeeded, else 1. `--no-wait` prints the builds
 * and returns at once. Ctrl-C stops the waiting, never the builds.
 */
export function registerBuildCommand(program: Command, deps: CliContextDeps = {}): Command {
  return program
    .command('build')
    .description('trigger the builds of a ref, wait for them, and download their artifacts (exit 0: all succeeded, 1: one did not)')
    .requiredOption('--repo <owner/name>', 'the repository', parseRepoArgument)
    .requiredOption('--ref <ref>', 'a branch name, refs/heads/<branch> or refs/tags/<tag>', parseRefArgument)
    .option('--sha <sha>', 'the commit (default: what the ref points at now)', parseShaArgument)
    .option('--force', 'build even when an identical earlier build could be reused')
    .option('--no-wait', 'print the builds and return at once')
    .option('--follow', 'print the build logs as they are written')
    .option('--param <NAME=VALUE>', "a value for a definition's parameter (repeat for several; see README, Parameters)", collectParam)
    .option('--target <dir>', 'download every artifact into DIR, each checked against its sha256')
    .action(async (options: BuildOptions, command: Command) => {
      if (!options.wait && (options.follow === true || options.target !== undefined)) {
        throw new CliError(EXIT.usage, '--no-wait cannot go with --follow or --target, which wait for the builds');
      }
      const ctx = createCliContext(command, deps);
      const body = {
        repo: options.repo,
        ref: options.ref,
        ...(options.sha === undefined ? {} : { sha: options.sha }),
        ...(options.force === true ? { force: true } : {}),
        ...(options.param === undefined ? {} : { params: options.param }),
      };
      const waitSeconds = options.wait && options.follow !== true ? TRIGGER_WAIT_SECONDS : undefined;
      const triggered = await ctx.api.json('/api/builds', buildListSchema, { body, ...(waitSeconds === undefined ? {} : { query: { wait: waitSeconds } }) });
      const builds = triggered.body.builds;
      if (!options.wait) {
        ctx.out.result({ builds }, () => builds.map((b) => `${toBuildLine(b, ctx.out.style)}\n  ${b.pageUrl}`).join('\n'));
        return;
      }
      for (const build of builds) ctx.out.note(`${toBuildLabel(build)}: ${build.pageUrl}`);
      const reporter = createProgressReporter(ctx);
      const ended = options.follow === true ? await followBuilds(ctx, builds, reporter) : await waitForBuilds(ctx, builds, reporter);
      const artifacts = options.target === undefined ? [] : await downloadArtifacts(ctx, ended, resolve(options.target));
      const failed = ended.filter((b) => b.state !== 'success');
      ctx.out.result({ builds: ended, artifacts }, () => ended.map((b) => toBuildLine(b, ctx.out.style)).join('\n'));
      if (failed.length > 0) process.exitCode = EXIT.buildFailed;
    });
}
