import { execFile } from 'node:child_process';
import { resolve } from 'node:path';

/** bin/autobuilder.js of this checkout. */
export const CLI_BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'autobuilder.js');

/** How a spawned `autobuilder` ended: its exit code and everything it printed. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node bin/autobuilder.js ...args` as its own process and resolves when it exits
 * (whatever the code). `env` is added to a copy of this process's environment with the
 * variables the CLI reads cleared and no CLI config file (a developer's own must not leak in);
 * `undefined` values remove one.
 */
export function runCliProcess(
  args: readonly string[],
  options: { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number } = {},
): Promise<CliRun> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of [
    'AUTOBUILDER_URL',
    'AUTOBUILDER_API_TOKEN',
    'AUTOBUILDER_CONFIG',
    'AUTOBUILDER_WEBHOOK_SECRET',
    'GITHUB_WEBHOOK_SECRET',
    'GITHUB_ACTIONS',
    'GITHUB_WORKSPACE',
  ])
    delete env[name];
  // no CLI config file of the developer's (~/.config/autobuilder/cli.json) either
  env['XDG_CONFIG_HOME'] = resolve(import.meta.dirname, 'no-cli-config');
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return new Promise((ok, fail) => {
    execFile(
      process.execPath,
      [CLI_BIN, ...args],
      { env, cwd: options.cwd ?? resolve(import.meta.dirname, '..', '..'), timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 ** 2 },
      (err, stdout, stderr) => {
        if (err !== null && typeof err.code !== 'number') return fail(new Error(`autobuilder ${args.join(' ')} did not exit: ${err.message}\n${stderr}`));
        ok({ code: err === null ? 0 : (err.code as number), stdout, stderr });
      },
    );
  });
}
