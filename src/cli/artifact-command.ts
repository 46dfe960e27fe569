import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { assertArtifactFileName, isArtifactDigest, saveArtifact, toEtagDigest } from './artifact-download.js';
import { getBuild } from './build-wait.js';
import { parseBuildIdArgument, parseRefArgument, parseRepoArgument } from './cli-arguments.js';
import { createCliContext, ServerError, type CliContextDeps } from './cli-context.js';
import { CliError, EXIT } from './exit-codes.js';

/** The options of `artifact get`, as commander parses them. */
interface GetOptions {
  build?: string;
  name?: string;
  repo?: string;
  ref?: string;
  output?: string;
}

/** Where to write: `-o FILE`, inside `-o DIR` when it is a directory, else `./<default name>`. */
async function toOutputFile(output: string | undefined, defaultName: string): Promise<string> {
  if (output === undefined) return resolve(defaultName);
  const isDir = await stat(output).then(
    (s) => s.isDirectory(),
    () => false,
  );
  return isDir ? resolve(join(output, defaultName)) : resolve(output);
}

/**
 * Adds `artifact get`: one artifact by digest, by build and name, or the latest successful
 * one of a repository's ref and name; streamed to a file and checked against its sha256
 * (the digest given, the build's record, or the answer's `ETag`).
 */
export function registerArtifactCommand(program: Command, deps: CliContextDeps = {}): void {
  const artifact = program.command('artifact').description('download build artifacts');
  artifact
    .command('get')
    .description('download one artifact: by DIGEST, by --build ID --name N, or the latest successful --repo R --ref REF --name N')
    .argument('[digest]', 'sha256 of the artifact (64 hex)')
    .option('--build <id>', 'the build that made it', parseBuildIdArgument)
    .option('--name <name>', "the artifact's file name")
    .option('--repo <owner/name>', 'with --ref and --name: the latest successful build of that ref', parseRepoArgument)
    .option('--ref <ref>', 'a branch name, refs/heads/<branch> or refs/tags/<tag>', parseRefArgument)
    .option('-o, --output <file>', 'where to write it (a directory: under the artifact name); default ./<name>, or ./<digest>')
    .action(async (digest: string | undefined, options: GetOptions, command: Command) => {
      const modes = [digest !== undefined, options.build !== undefined, options.repo !== undefined || options.ref !== undefined].filter(Boolean).length;
      if (modes !== 1) throw new CliError(EXIT.usage, 'give one of: DIGEST, --build ID --name N, or --repo R --ref REF --name N');
      if (digest !== undefined && (!isArtifactDigest(digest) || options.name !== undefined)) {
        throw new CliError(EXIT.usage, 'a DIGEST is the 64 lowercase hex of the sha256 of the artifact, given alone');
      }
      if (digest === undefined && options.name === undefined) throw new CliError(EXIT.usage, '--name is required with --build or --repo');
      if (options.repo !== undefined && options.ref === undefined) throw new CliError(EXIT.usage, '--repo needs --ref (and --name)');
      if (options.ref !== undefined && options.repo === undefined) throw new CliError(EXIT.usage, '--ref needs --repo (and --name)');

      const ctx = createCliContext(command, deps);
      const name = options.name ?? '';
      let path: string;
      let query: Record<string, string> = {};
      let expected: string | null = null;
      let build: string | null = null;
      if (digest !== undefined) {
        path = `/api/artifacts/${digest}`;
        expected = digest;
      } else if (options.build !== undefined) {
        const view = await getBuild(ctx.api, options.build);
        const known = view.artifacts.find((a) => a.name === name);
        if (known === undefined) throw new ServerError(404, 'NOT_FOUND', `build ${view.id} (${view.state}) has no artifact ${JSON.stringify(name)}`);
        path = `/api/builds/${encodeURIComponent(view.id)}/artifacts/${encodeURIComponent(name)}`;
        expected = known.digest;
        build = view.id;
      } else {
        const [owner = '', repo = ''] = (options.repo ?? '').split('/');
        path = `/api/repos/${owner}/${repo}/artifacts/${encodeURIComponent(name)}`;
        query = { ref: options.ref ?? '' };
      }
      const file = await toOutputFile(options.output, digest ?? assertArtifactFileName(name));
      const response = await ctx.api.request(path, { query, headers: { Accept: 'application/octet-stream' } });
      expected ??= toEtagDigest(response.headers.get('etag'));
      build ??= response.headers.get('x-autobuilder-build');
      const saved = await saveArtifact(response, file, expected);
      ctx.out.result({ ...saved, name: digest === undefined ? name : null, build, verified: expected !== null }, () =>
        [
          `saved ${saved.file} (${saved.size} bytes, sha256:${saved.digest}${expected === null ? ', not verified: the server named no digest' : ' verified'})`,
        ].join('\n'),
      );
    });
}
