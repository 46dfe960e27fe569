import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { SimpleGit } from 'simple-git';
import { readGitBlobs } from '../git/read-git-blobs.js';
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
  const blobs = await readGitBlobs(
    gitDir,
    small.map((w) => w.oid),
  );
  return wanted.map((w) => ({ file: w.file, size: w.size, bytes: blobs.get(w.oid) ?? null }));
}
