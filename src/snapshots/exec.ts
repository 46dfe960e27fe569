import { execFile } from 'node:child_process';
import { lstat } from 'node:fs/promises';
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

/**
 * Resolves when nothing exists at `path` (not even a dangling symlink).
 * @throws AppError `SNAPSHOT_FAILED` when something does
 */
export async function mustNotExist(path: string): Promise<void> {
  try {
    await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  throw new AppError('SNAPSHOT_FAILED', `workspace ${path} already exists`);
}
