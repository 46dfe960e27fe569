import type { Command } from 'commander';
import { isTerminal } from '../builds/build.js';
import { buildListSchema, buildStateSchema, queueSchema } from './api-schemas.js';
import { toBuildDetails, toBuildLine, toWaitingText } from './build-format.js';
import { getBuild, LONG_POLL_SECONDS, streamLog } from './build-wait.js';
import { parseBuildIdArgument, parseRefArgument, parseRepoArgument, parseStateArgument, toCountParser } from './cli-arguments.js';
import { createCliContext, type CliContextDeps } from './cli-context.js';
import { EXIT } from './exit-codes.js';

/**
 * Adds the read commands: `logs ID [-f]` (the log; with `-f` until the build ends, then exit
 * by its state), `status [ID]` (a build, or the server's queue), `list` (history with filters).
 */
export function registerReadCommands(program: Command, deps: CliContextDeps = {}): void {
  program
    .command('logs')
    .description("print a build's log; with -f follow it until the build ends (then exit 0 on success, 1 otherwise)")
    .argument('<id>', 'build id', parseBuildIdArgument)
    .option('-f, --follow', 'keep printing as the build writes, until it ends')
    .action(async (id: string, options: { follow?: boolean }, command: Command) => {
      const ctx = createCliContext(command, deps);
      const follow = options.follow === true;
      let text = '';
      const streamed = await streamLog(ctx.api, id, follow, (piece) => {
        if (ctx.out.json) text += piece;
        else ctx.out.write(piece);
      });
      if (!streamed.endsWithNewline && !ctx.out.json) ctx.out.write('\n');
      if (!follow && !ctx.out.json) return;
      // the log closes after the build's end is stored: this answers at once after -f
      const build = await getBuild(ctx.api, id, follow ? LONG_POLL_SECONDS : undefined);
      ctx.out.result({ build, log: text }, () => '');
      if (follow && isTerminal(build.state) && build.state !== 'success') process.exitCode = EXIT.buildFailed;
    });

  program
    .command('status')
    .description("a build's state, artifacts and why it waits; without ID the server's queue")
    .argument('[id]', 'build id', parseBuildIdArgument)
    .action(async (id: string | undefined, _options: unknown, command: Command) => {
      const ctx = createCliContext(command, deps);
      const style = ctx.out.style;
      if (id !== undefined) {
        const build = await getBuild(ctx.api, id);
        const queue = build.state === 'queued' ? await ctx.api.get('/api/queue', queueSchema) : null;
        const waiting = queue === null ? null : toWaitingText(build.id, queue);
        ctx.out.result({ build, waiting }, () => toBuildDetails(build, style, waiting));
        return;
      }
      const queue = await ctx.api.get('/api/queue', queueSchema);
      const running = (await ctx.api.get('/api/builds', buildListSchema, { query: { state: 'running', limit: 500 } })).builds;
      const waiting = queue.waiting.length === 0 ? [] : (await ctx.api.get('/api/builds', buildListSchema, { query: { state: 'queued', limit: 500 } })).builds;
      ctx.out.result({ queue, running }, () => {
        const lines = [
          `${style.bold('running')} ${queue.running.length} of ${queue.concurrency} slots; ${queue.waiting.length} waiting (backlog ${queue.backlog})`,
        ];
        if (queue.blocked !== null) lines.push(style.yellow(`nothing starts now: ${queue.blocked}`));
        if (queue.stopping) lines.push(style.yellow('the server is stopping'));
        for (const build of running) lines.push(`  ${toBuildLine(build, style)}`);
        for (const entry of queue.waiting) {
          const build = waiting.find((b) => b.id === entry.buildId);
          const label = build === undefined ? entry.buildId : toBuildLine(build, style);
          lines.push(`  ${label}\n      ${style.dim(toWaitingText(entry.buildId, queue) ?? entry.reason)}`);
        }
        if (queue.deciding.length > 0) lines.push(`  ${queue.deciding.length} being decided: ${queue.deciding.join(', ')}`);
        return lines.join('\n');
      });
    });

  program
    .command('list')
    .description('builds, newest first')
    .option('--repo <owner/name>', 'only this repository', parseRepoArgument)
    .option('--ref <ref>', 'only this ref (a branch name, refs/heads/<branch> or refs/tags/<tag>)', parseRefArgument)
    .option('--state <state>', `only builds in this state (${buildStateSchema.options.join(', ')})`, parseStateArgument)
    .option('--limit <n>', 'at most this many builds (1 to 500)', toCountParser(500), 20)
    .action(async (options: { repo?: string; ref?: string; state?: string; limit: number }, command: Command) => {
      const ctx = createCliContext(command, deps);
      const page = await ctx.api.get('/api/builds', buildListSchema, {
        query: { repo: options.repo, ref: options.ref, state: options.state, limit: options.limit },
      });
      ctx.out.result(page, () => (page.builds.length === 0 ? 'no builds' : page.builds.map((b) => toBuildLine(b, ctx.out.style)).join('\n')));
    });
}
