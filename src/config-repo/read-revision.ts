import { spawn } from 'node:child_process';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { SimpleGit } from 'simple-git';
import { AppError } from '../errors.js';
import { definitionFileKey, MAX_DEFINITION_FILES, type RevisionFile } from './config-snapshot.js';
import { MAX_DEFINITION_BYTES } from './decode-definition-bytes.js';

/** One revision of the config repository as a source reads it: its commit (null in plain-directory mode, or a directory without git) and its definition files. */
export interface Revision {
  sha: string | null;
  files: RevisionFile[];
}

/** Files under `root` (not following symlinks, skipping `.git` and other dot-directories), with their bytes when small enough. */
export async function readDirectoryRevision(root: string): Promise<RevisionFile[]> {
  const files: RevisionFile[] = [];
  const pending: string[] = [''];
  while (pending.length > 0) {
    const rel = pending.pop() as string;
    const entries = await readdir(join(root, rel), { withFileTypes: true }).catch((err: NodeJS.ErrnoException) =>
      err.code === 'ENOENT' ? [] : Promise.reject(err),
    );
    for (const e of entries) {
      const path = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory() && !e.name.startsWith('.')) pending.push(path);
      else if (e.isFile() && definitionFileKey(path) !== null) {
        if (files.length >= MAX_DEFINITION_FILES) return [...files, { file: path, bytes: null, size: 0 }];
        const handle = await open(join(root, path), 'r');
        try {
          const { size } = await handle.stat();
          files.push({ file: path, size, bytes: size > MAX_DEFINITION_BYTES ? null : await handle.readFile() });
        } finally {
          await handle.close();
        }
      }
    }
  }
  return files;
}

/**
 * The definition files of commit `sha` in the git repository `gitDir`, read from its
 * objects (no work tree): `ls-tree` gives paths and sizes, one `cat-file --batch` the blobs
 * that are small enough. Object ids written to cat-file come from ls-tree, never from input.
 */
export async function readGitRevision(git: SimpleGit, gitDir: string, sha: string): Promise<RevisionFile[]> {
  const listing = await git.raw(['ls-tree', '-r', '-l', '-z', '--full-tree', sha]);
  const wanted: { file: string; oid: string; size: number }[] = [];
  for (const entry of listing.split('\0')) {
    // "<mode> <type> <oid> <size>\t<path>"; symlinks (120000) and submodules are not definitions
    const m = /^100(?:644|755) blob ([0-9a-f]{40,64}) +(\d+)\t(.*)$/s.exec(entry);
    if (m !== null && definitionFileKey(m[3] as string) !== null) wanted.push({ oid: m[1] as string, size: Number(m[2]), file: m[3] as string });
  }
  const small = wanted.filter((w) => w.size <= MAX_DEFINITION_BYTES).slice(0, MAX_DEFINITION_FILES);
  const blobs = await catFileBatch(
    gitDir,
    small.map((w) => w.oid),
  );
  return wanted.map((w) => ({ file: w.file, size: w.size, bytes: blobs.get(w.oid) ?? null }));
}

/** Reads blobs with one `git cat-file --batch` process; resolves oid → bytes. */
function catFileBatch(gitDir: string, oids: readonly string[]): Promise<Map<string, Buffer>> {
  if (oids.length === 0) return Promise.resolve(new Map());
  return new Promise((ok, fail) => {
    const child = spawn('git', ['--git-dir', gitDir, 'cat-file', '--batch'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/' },
    });
    const chunks: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('error', fail);
    child.once('close', (code) => {
      if (code !== 0) return fail(new AppError('GIT_FAILED', `git cat-file failed (${code}): ${stderr.trim().slice(0, 300)}`));
      const out = Buffer.concat(chunks);
      const blobs = new Map<string, Buffer>();
      let at = 0;
      while (at < out.length) {
        const eol = out.indexOf(0x0a, at);
        if (eol < 0) break;
        const [oid = '', type, size] = out.subarray(at, eol).toString().split(' ');
        if (type !== 'blob' || size === undefined) return fail(new AppError('GIT_FAILED', `git cat-file: unexpected answer for ${oid}`));
        const start = eol + 1;
        blobs.set(oid, out.subarray(start, start + Number(size)));
        at = start + Number(size) + 1;
      }
      ok(blobs);
    });
    child.stdin.end(oids.map((o) => `${o}\n`).join(''));
  });
}
