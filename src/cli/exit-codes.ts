/**
 * The `autobuilder` command's exit codes (documented in README, Command line):
 * 0 the command did what it was asked (a build it waited for succeeded), 1 a build failed
 * (`failure`, `error` or `cancelled`; `config check` found problems), 2 usage or
 * configuration error (bad flags, unreadable config), 3 server or network error (the server
 * could not be reached, or answered an error that is not the build's).
 */
export const EXIT = { ok: 0, buildFailed: 1, usage: 2, server: 3 } as const;

/** One of {@link EXIT}'s values. */
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error a command ends with: its message is printed (no stack), then the process exits with `exitCode`. */
export class CliError extends Error {
  readonly exitCode: ExitCode;
  constructor(exitCode: ExitCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}
