import { spawn } from 'node:child_process';
import { AppError } from '../errors.js';

/** git's environment: nothing of the server's own but PATH and HOME (no GIT_* from the caller). */
const gitEnv = (): Record<string, string> => ({ PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/' });

/**
 * Reads blobs `ids` of the git repository `gitDir` with one `git cat-file --batch`; the ids
 * come from a listing, never from input. Resolves id → content.
 * @throws AppError `GIT_FAILED` when git fails or answers something else than a blob
 */
export function readGitBlobs(gitDir: string, ids: readonly string[]): Promise<Map<string, Buffer>> {
  const unique = [...new Set(ids)];
  if (unique.length === 0) return Promise.resolve(new Map());
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['--git-dir', gitDir, 'cat-file', '--batch'], { stdio: ['pipe', 'pipe', 'pipe'], env: gitEnv() });
    const chunks: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('error', (err) => reject(new AppError('GIT_FAILED', `git cat-file could not run: ${err.message}`, { cause: err })));
    child.once('close', (code) => {
      if (code !== 0) return reject(new AppError('GIT_FAILED', `git cat-file failed (${code}): ${stderr.trim().slice(0, 300)}`));
      const out = Buffer.concat(chunks);
      const blobs = new Map<string, Buffer>();
      let at = 0;
      while (at < out.length) {
        const eol = out.indexOf(0x0a, at);
        if (eol < 0) break;
        const [id = '', type, size] = out.subarray(at, eol).toString().split(' ');
        if (type !== 'blob' || size === undefined) return reject(new AppError('GIT_FAILED', `git cat-file: ${id} is not a blob here`));
        const start = eol + 1;
        blobs.set(id, out.subarray(start, start + Number(size)));
        at = start + Number(size) + 1;
      }
      resolve(blobs);
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(unique.map((id) => `${id}\n`).join(''));
  });
}
