import type { Command } from 'commander';
import { buildListSchema, buildViewSchema } from './api-schemas.js';
import { toBuildLine } from './build-format.js';
import { createProgressReporter, followBuilds, toBuildLabel, waitForBuilds } from './build-wait.js';
import { parseBuildIdArgument } from './cli-arguments.js';
import { createCliContext, type CliContextDeps } from './cli-context.js';
import { EXIT } from './exit-codes.js';

/**
 * Adds the write commands on one build (they need the API token): `cancel ID` and
 * `rebuild ID [--force] [--wait] [--follow]`.
 */
export function registerControlCommands(program: Command, deps: CliContextDeps = {}): void {
  program
    .command('cancel')
    .description('cancel a waiting or running build (it ends cancelled)')
    .argument('<id>', 'build id', parseBuildIdArgument)
    .action(async (id: string, _options: unknown, command: Command) => {
      const ctx = createCliContext(command, deps);
      const { body: build } = await ctx.api.json(`/api/builds/${encodeURIComponent(id)}/cancel`, buildViewSchema, { method: 'POST' });
      ctx.out.result(build, () => toBuildLine(build, ctx.out.style));
    });

  program
    .command('rebuild')
    .description('build the same commit again; with --wait exit by its state like build')
    .argument('<id>', 'build id', parseBuildIdArgument)
    .option('--force', 'run it even when an identical earlier build could be reused')
    .option('--wait', 'wait for the new builds (exit 0: all succeeded, 1: one did not)')
    .option('--follow', 'print the logs of the new builds as they are written (implies --wait)')
    .action(async (id: string, options: { force?: boolean; wait?: boolean; follow?: boolean }, command: Command) => {
      const ctx = createCliContext(command, deps);
      const { body } = await ctx.api.json(`/api/builds/${encodeURIComponent(id)}/rebuild`, buildListSchema, {
        body: options.force === true ? { force: true } : {},
      });
      let builds = body.builds;
      if (options.wait === true || options.follow === true) {
        for (const build of builds) ctx.out.note(`${toBuildLabel(build)}: ${build.pageUrl}`);
        const reporter = createProgressReporter(ctx);
        builds = options.follow === true ? await followBuilds(ctx, builds, reporter) : await waitForBuilds(ctx, builds, reporter);
        if (builds.some((b) => b.state !== 'success')) process.exitCode = EXIT.buildFailed;
      }
      ctx.out.result({ builds }, () => builds.map((b) => `${toBuildLine(b, ctx.out.style)}\n  ${b.pageUrl}`).join('\n'));
    });
}
