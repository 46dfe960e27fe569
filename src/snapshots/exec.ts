import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { AppError } from '../errors.js';

const execFileAsync = promisify(execFile);

/**
 * Runs `file` with `args` (never through a shell) and resolves with its stdout.
 * @throws AppError `SNAPSHOT_FAILED` carrying the command's stderr
 */
export async function run(file: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(file, args, { maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new AppError('SNAPSHOT_FAILED', `${file} ${args.join(' ')} failed: ${stderr || String(err)}`, { cause: err });
  }
}
