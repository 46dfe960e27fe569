import { stat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { buildSnapshot, definitionFileKey, indexSnapshot, type RevisionFile } from '../config-repo/config-snapshot.js';
import { formatProblem, type DefinitionProblem } from '../config-repo/definition-error.js';
import { toMatchAnswer, type MatchAnswer } from '../config-repo/match-answer.js';
import { readDirectoryRevision } from '../config-repo/read-revision.js';
import { isAppError, toMessage } from '../errors.js';
import { createHardenedGit } from '../git/hardened-git.js';
import { parseRefArgument, parseRepoArgument } from './cli-arguments.js';
import { createCliContext, createCliOutput, globalOptionsOf, type CliOutput } from './cli-context.js';
import { CliError, EXIT } from './exit-codes.js';
import { toErrorAnnotation } from './workflow-command.js';

/** What `autobuilder config check` found in a config repository checkout. */
export interface ConfigCheckResult {
  /** the directory checked, absolute */
  dir: string;
  /** true when every definition file validates (the server would activate this revision) */
  valid: boolean;
  /** HEAD of the checkout when it is a git work tree, else null; the files checked are the working tree's, committed or not */
  headSha: string | null;
  /** `<owner>/<repo>/**.yaml` files found (the only files that are definitions) */
  definitionFiles: number;
  /** `owner/repo` of every repository with definitions, sorted; empty when not valid */
  repositories: string[];
  /** the commit status contexts the definitions post (`autobuilder/<name>`), sorted, each once; empty when not valid */
  contexts: string[];
  /** every problem found, `file` relative to `dir`; empty when valid */
  problems: DefinitionProblem[];
}

/** A checkout read as the server reads a plain-directory config repository, validated. */
interface ReadCheckout {
  root: string;
  headSha: string | null;
  definitionFiles: number;
  built: ReturnType<typeof buildSnapshot>;
}

/**
 * Reads the checkout `dir` as the server reads a plain-directory config repository: the
 * working tree's `<owner>/<repo>/**.yaml` files (dot-directories skipped; committed or not),
 * parsed and validated by the server's own code into a snapshot, or every problem found.
 * @throws CliError (exit 2) when `dir` is not a directory
 */
async function readCheckout(dir: string): Promise<ReadCheckout> {
  const root = resolve(dir);
  const info = await stat(root).catch((err: unknown) => {
    throw new CliError(EXIT.usage, `${dir}: no such directory (${(err as NodeJS.ErrnoException).code ?? toMessage(err)})`);
  });
  if (!info.isDirectory()) throw new CliError(EXIT.usage, `${dir} is not a directory`);
  // as the server does in directory mode: the commit is HEAD's when the checkout is a git work tree
  const headSha = await stat(join(root, '.git')).then(
    () =>
      createHardenedGit({ baseDir: root, timeoutMs: 10_000 })
        .revparse(['HEAD'])
        .then(
          (sha) => sha.trim(),
          () => null,
        ),
    () => null,
  );
  let files: RevisionFile[];
  try {
    files = await readDirectoryRevision(root);
  } catch (err) {
    const problem: DefinitionProblem = { file: '', line: null, key: '', message: `the checkout could not be read: ${toMessage(err)}` };
    return { root, headSha, definitionFiles: 0, built: { snapshot: null, problems: [problem], cache: new Map() } };
  }
  const definitionFiles = files.filter((f) => definitionFileKey(f.file) !== null).length;
  return { root, headSha, definitionFiles, built: buildSnapshot(headSha, files) };
}

/**
 * Validates the config repository checkout `dir` offline, as the server validates a revision
 * before it activates it (every file, every problem).
 * @throws CliError (exit 2) when `dir` is not a directory
 */
export async function checkConfigDirectory(dir: string): Promise<ConfigCheckResult> {
  const { root, headSha, definitionFiles, built } = await readCheckout(dir);
  const snapshot = built.snapshot;
  return {
    dir: root,
    valid: snapshot !== null,
    headSha,
    definitionFiles,
    repositories: [...(snapshot?.repositories ?? [])],
    contexts: [...new Set(snapshot?.files.flatMap((f) => f.definitions.map((d) => `autobuilder/${d.name}`)) ?? [])].sort(),
    problems: built.problems,
  };
}

/** `owner/name` split; throws CliError (exit 2) for anything else. */
function splitRepo(repo: string): { owner: string; name: string } {
  const [owner, name, ...rest] = repo.split('/');
  if (owner === undefined || owner === '' || name === undefined || name === '' || rest.length > 0) {
    throw new CliError(EXIT.usage, `--repo must be owner/name, not ${JSON.stringify(repo)}`);
  }
  return { owner, name };
}

/** A dry run answered from a checkout: its answer, or the problems that make the server refuse the checkout's revision. */
export type OfflineMatch = { answer: MatchAnswer; problems: [] } | { answer: null; problems: DefinitionProblem[] };

/**
 * The dry run of `ref` of `repo` (`owner/name`) answered offline from the checkout `dir`
 * with the server's matcher (the same answer as `GET /api/config/match` of a server whose
 * config repository is that checkout).
 * @throws CliError exit 2 for a missing `dir` or a `repo`/`ref` the server refuses; exit 1
 *   when two matching files define a build of the same name
 */
export async function matchOffline(dir: string, repo: string, ref: string): Promise<OfflineMatch> {
  const { owner, name } = splitRepo(repo);
  const { built } = await readCheckout(dir);
  if (built.snapshot === null) return { answer: null, problems: built.problems };
  try {
    return { answer: toMatchAnswer(repo, ref, indexSnapshot(built.snapshot).lookup({ owner, repo: name, ref })), problems: [] };
  } catch (err) {
    if (isAppError(err, 'UNSAFE_INPUT')) throw new CliError(EXIT.usage, err.message, { cause: err });
    if (isAppError(err, 'DEFINITION_INVALID')) throw new CliError(EXIT.buildFailed, err.message, { cause: err });
    throw err;
  }
}

/** The shape of `GET /api/config/match`'s answer ({@link MatchAnswer}), checked before it is printed. */
const matchAnswerSchema: z.ZodType<MatchAnswer> = z.object({
  repo: z.string(),
  ref: z.string(),
  configSha: z.string().nullable(),
  wouldRun: z.array(
    z.object({ name: z.string(), context: z.string(), file: z.string(), script: z.string(), baseimage: z.string().nullable(), incremental: z.boolean() }),
  ),
  reason: z.string().nullable(),
  candidates: z.array(z.object({ file: z.string(), matched: z.boolean(), why: z.string() })),
});

/** `file` as an annotation path: relative to the workspace the runner checked out (`GITHUB_WORKSPACE`, else the working directory), when it is inside it. */
function toWorkspacePath(root: string, file: string, env: NodeJS.ProcessEnv): string {
  if (file === '') return '';
  const path = relative(resolve(env['GITHUB_WORKSPACE'] ?? '.'), resolve(root, file));
  return path.startsWith('..') || isAbsolute(path) ? file : path.split(sep).join('/');
}

/** The text of a check: one line per problem (or one annotation with `annotate`), then a summary. */
function printCheck(out: CliOutput, result: ConfigCheckResult, annotate: boolean, env: NodeJS.ProcessEnv): void {
  const where = result.headSha === null ? 'working tree' : `working tree, HEAD ${result.headSha.slice(0, 12)}`;
  out.result(result, () => {
    if (result.valid) {
      const repos = result.repositories.length;
      return [
        `${result.dir} (${where}): valid`,
        `  ${result.definitionFiles} definition file${result.definitionFiles === 1 ? '' : 's'}, ${repos} repositor${repos === 1 ? 'y' : 'ies'}${repos > 0 ? ` (${result.repositories.join(', ')})` : ''}`,
        `  ${result.contexts.length} context${result.contexts.length === 1 ? '' : 's'}${result.contexts.length > 0 ? `: ${result.contexts.join(', ')}` : ''}`,
      ].join('\n');
    }
    const lines = result.problems.map((p) =>
      annotate
        ? toErrorAnnotation({
            file: toWorkspacePath(result.dir, p.file, env),
            line: p.line,
            title: p.key === '' ? 'build definition' : p.key,
            message: p.message,
          })
        : out.style.red(formatProblem(p)),
    );
    const files = new Set(result.problems.map((p) => p.file)).size;
    lines.push(
      `${result.problems.length} problem${result.problems.length === 1 ? '' : 's'} in ${files} file${files === 1 ? '' : 's'} of ${result.dir} (${where}): the server would refuse this revision`,
    );
    return lines.join('\n');
  });
}

/** The text of a dry run. */
function formatMatch(out: CliOutput, answer: MatchAnswer, source: string): string {
  const { style } = out;
  const lines = [`${answer.repo} ${answer.ref} (${source}${answer.configSha === null ? '' : `, config ${answer.configSha.slice(0, 12)}`})`];
  if (answer.wouldRun.length === 0) lines.push(`would run nothing: ${answer.reason ?? 'no definitions'}`);
  else {
    lines.push(`would run ${answer.wouldRun.length} build${answer.wouldRun.length === 1 ? '' : 's'}:`);
    for (const b of answer.wouldRun) {
      lines.push(
        `  ${style.bold(b.context)}  script ${b.script}  image ${b.baseimage ?? '(docker.defaultImage)'}${b.incremental ? '' : '  not incremental'}  from ${b.file}`,
      );
    }
  }
  if (answer.candidates.length > 0) {
    lines.push('files considered:');
    for (const c of answer.candidates) lines.push(`  ${c.matched ? style.green('match') : style.dim('no   ')}  ${c.file}: ${c.why}`);
  }
  return lines.join('\n');
}

/**
 * Adds `config check [DIR]` and `config match --repo R --ref REF [DIR]` (see README,
 * Command line): both read a config repository checkout offline with the server's own
 * parser and matcher; `config match --server` asks the server instead.
 */
export function registerConfigCommands(program: Command, env: NodeJS.ProcessEnv = process.env): void {
  const config = program.command('config').description('check a config repository checkout, or dry-run which builds a ref would run');
  config
    .command('check')
    .description(
      "validate a config repository checkout offline, as the server would: the working tree's files (committed or not, dot-directories skipped); prints file:line: key: message per problem (GitHub Actions annotations when GITHUB_ACTIONS=true); exit 0 valid, 1 problems, 2 no such DIR",
    )
    .argument('[dir]', 'the checkout', '.')
    .action(async (dir: string, _options: unknown, command: Command) => {
      const out = createCliOutput({ json: globalOptionsOf(command).json === true, env });
      const result = await checkConfigDirectory(dir);
      printCheck(out, result, env['GITHUB_ACTIONS'] === 'true' && !out.json, env);
      if (!result.valid) process.exitCode = EXIT.buildFailed;
    });
  config
    .command('match')
    .description(
      'which builds a push of REF to REPO would run, from which files, and why each file matched or not: offline from the checkout DIR (its working tree), or from the server with --server',
    )
    .requiredOption('--repo <owner/name>', 'the repository pushed to', parseRepoArgument)
    .requiredOption('--ref <ref>', 'refs/heads/<branch> or refs/tags/<tag>; a bare name is a branch', parseRefArgument)
    .option('--server', 'ask the server (GET /api/config/match, its active config) instead of reading DIR')
    .argument('[dir]', 'the config repository checkout (offline)')
    .action(async (dir: string | undefined, options: { repo: string; ref: string; server?: boolean }, command: Command) => {
      const { ref } = options;
      if (options.server === true) {
        if (dir !== undefined) throw new CliError(EXIT.usage, 'give either DIR (offline) or --server, not both');
        const context = createCliContext(command, { env });
        const answer = await context.api.get('/api/config/match', matchAnswerSchema, { query: { repo: options.repo, ref } });
        context.out.result(answer, () => formatMatch(context.out, answer, `server ${context.connection.url}`));
        return;
      }
      const out = createCliOutput({ json: globalOptionsOf(command).json === true, env });
      const checkout = dir ?? '.';
      const match = await matchOffline(checkout, options.repo, ref);
      if (match.answer === null) {
        out.result({ problems: match.problems }, () =>
          [...match.problems.map(formatProblem), `${resolve(checkout)}: invalid, the server would refuse it (see autobuilder config check)`].join('\n'),
        );
        process.exitCode = EXIT.buildFailed;
        return;
      }
      const answer = match.answer;
      out.result(answer, () => formatMatch(out, answer, `working tree of ${resolve(checkout)}`));
    });
}
