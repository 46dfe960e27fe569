import { Command, CommanderError } from 'commander';
import { registerArtifactCommand } from './artifact-command.js';
import { registerBuildCommand } from './build-command.js';
import { addGlobalOptions } from './cli-context.js';
import { registerConfigCommands } from './config-commands.js';
import { registerControlCommands } from './control-commands.js';
import { registerDoctorCommand } from './doctor.js';
import { CliError, EXIT } from './exit-codes.js';
import { registerReadCommands } from './read-commands.js';
import { registerWebhookCommands } from './webhook-test.js';

/**
 * The `autobuilder` command line (bin/autobuilder.js): `worker` runs a build worker; the other
 * commands talk to a server or check a config repository offline. Each command module adds
 * its commands to the program made here.
 */
export function createProgram(): Command {
  const program = new Command('autobuilder')
    .description('Self-hosted GitHub CI: run a build worker, drive a server, check a config repository')
    .showHelpAfterError()
    .exitOverride();
  addGlobalOptions(program);
  program
    .command('worker')
    .description('run a build worker (configuration: worker.config.ts or AUTOBUILDER_WORKER_CONFIG; see README, Scaling out)')
    .action(async () => {
      const { runWorkerCommand } = await import('../worker/main.js');
      await runWorkerCommand();
    });
  registerBuildCommand(program);
  registerReadCommands(program);
  registerControlCommands(program);
  registerArtifactCommand(program);
  registerConfigCommands(program);
  registerWebhookCommands(program);
  registerDoctorCommand(program);
  return program;
}

/**
 * Runs the command line on `argv` (process.argv shape) and returns the exit code: a
 * {@link CliError} prints its message and gives its code, a usage error (unknown command or
 * flag) gives {@link EXIT}.usage, anything else is printed without a stack and gives
 * {@link EXIT}.server. Help and version give 0.
 */
export async function runCli(argv: readonly string[], program: Command = createProgram()): Promise<number> {
  try {
    await program.parseAsync([...argv]);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (err instanceof CliError) {
      process.stderr.write(`autobuilder: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`autobuilder: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.server;
  }
}
