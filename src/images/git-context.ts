import { spawn } from 'node:child_process';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError } from '../errors.js';
import { toGitBlobId, type ContextFile, type ContextLimits, type ContextListing } from './build-context.js';

/** git's environment for reading objects: the server's PATH and HOME, nothing else of its (no GIT_* of the host). */
const gitEnv = (): Record<string, string> => ({ PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/' });

/** The kind of a context entry of git mode `mode`; null for what a context does not hold (a submodule). */
function kindOf(mode: string): ContextFile['kind'] | null {
  if (mode === '100644') return 'file';
  if (mode === '100755') return 'executable';
  if (mode === '120000') return 'symlink';
  return null;
}

/**
 * Lists the files under `dir` of tree-ish `treeish` in the git repository `gitDir` (a bare
 * mirror), recursively, from its objects: `git ls-tree -r -l -z`, read as it streams and
 * stopped as soon as the listing passes `limits` (a hostile commit may hold a million files).
 * Submodules are left out. Nothing is fetched.
 * @returns the files, with the problem that stopped the listing (over the limits, `dir` not a directory there) or null
 * @throws AppError `GIT_FAILED` when git cannot be run or fails otherwise
 */
export function listGitContext(gitDir: string, treeish: string, dir: string, limits: ContextLimits): Promise<ContextListing> {
  const spec = dir === '.' ? treeish : `${treeish}:${dir}`;
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['--git-dir', gitDir, 'ls-tree', '-r', '-l', '-z', '--end-of-options', spec], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: gitEnv(),
    });
    const files: ContextFile[] = [];
    let bytes = 0;
    let problem: string | null = null;
    let rest = '';
    let stderr = '';
    const stop = (why: string) => {
      if (problem !== null) return;
      problem = why;
      child.kill('SIGKILL');
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      if (problem !== null) return;
      const entries = (rest + chunk).split('\0');
      rest = entries.pop() ?? '';
      for (const entry of entries) {
        // "<mode> <type> <id> <size>\t<path>"
        const m = /^(\d{6}) (\w+) ([0-9a-f]{40,64}) +(\d+|-)\t(.*)$/s.exec(entry);
        const kind = m === null ? null : kindOf(m[1] as string);
        if (m === null || kind === null) continue;
        const size = Number(m[4]);
        files.push({ path: m[5] as string, kind, id: m[3] as string, size });
        bytes += size;
        if (files.length > limits.maxFiles) return stop(`the context ${dir} has more than ${limits.maxFiles} files`);
        if (bytes > limits.maxBytes) return stop(`the context ${dir} has more than ${limits.maxBytes} bytes`);
      }
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < 2000) stderr += chunk.toString();
    });
    child.once('error', (err) => reject(new AppError('GIT_FAILED', `git ls-tree could not run: ${err.message}`, { cause: err })));
    child.once('close', (code) => {
      if (problem !== null) return resolve({ files, problem });
      if (code === 0) return resolve({ files, problem: null });
      // "Not a valid object name <tree>:<dir>": no such directory in the tree
      if (/not a valid object name|not a tree object/i.test(stderr)) return resolve({ files: [], problem: `the context directory ${dir} is not there` });
      reject(new AppError('GIT_FAILED', `git ls-tree failed (${code}): ${stderr.trim().slice(0, 300)}`));
    });
  });
}

/**
 * Lists and reads the files under `dir` of the directory `root` (a config repository read
 * from disk): regular files and symbolic links (not followed; their target is their
 * content), skipping `.git`; each named by its git blob id, as git would.
 * @returns the files with their contents by path, and the problem that stopped the listing (over the limits, no such directory) or null
 */
export async function readDirectoryContext(root: string, dir: string, limits: ContextLimits): Promise<ContextListing & { contents: Map<string, Buffer> }> {
  const files: ContextFile[] = [];
  const contents = new Map<string, Buffer>();
  let bytes = 0;
  const base = dir === '.' ? root : join(root, dir);
  try {
    if (!(await lstat(base)).isDirectory()) return { files, contents, problem: `the context directory ${dir} is not there` };
  } catch {
    return { files, contents, problem: `the context directory ${dir} is not there` };
  }
  const pending = [''];
  while (pending.length > 0) {
    const rel = pending.pop() as string;
    for (const entry of await readdir(join(base, rel), { withFileTypes: true })) {
      const path = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) {
        if (entry.name !== '.git') pending.push(path);
        continue;
      }
      let content: Buffer;
      let kind: ContextFile['kind'];
      if (entry.isSymbolicLink()) {
        content = Buffer.from(await readlink(join(base, path)));
        kind = 'symlink';
      } else if (entry.isFile()) {
        const stat = await lstat(join(base, path));
        if (bytes + stat.size > limits.maxBytes) return { files, contents, problem: `the context ${dir} has more than ${limits.maxBytes} bytes` };
        content = await readFile(join(base, path));
        kind = (stat.mode & 0o100) !== 0 ? 'executable' : 'file';
      } else continue;
      files.push({ path, kind, id: toGitBlobId(content), size: content.length });
      contents.set(path, content);
      bytes += content.length;
      if (files.length > limits.maxFiles) return { files, contents, problem: `the context ${dir} has more than ${limits.maxFiles} files` };
      if (bytes > limits.maxBytes) return { files, contents, problem: `the context ${dir} has more than ${limits.maxBytes} bytes` };
    }
  }
  return { files, contents, problem: null };
}
