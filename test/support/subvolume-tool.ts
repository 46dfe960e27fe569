import { execFile } from 'node:child_process';
import { resolve, join } from 'node:path';
import { promisify } from 'node:util';

const SOURCE = resolve(import.meta.dirname, '..', 'fixtures', 'tools', 'mksubvol.c');

/**
 * Compiles test/fixtures/tools/mksubvol.c with `gcc -static` into `dir` and returns the
 * binary's path: `mksubvol PARENT NAME` makes a Btrfs subvolume the way a hostile build can,
 * in any image (no btrfs-progs needed). Null when this host cannot build static binaries.
 */
export async function buildSubvolumeTool(dir: string): Promise<string | null> {
  const out = join(dir, 'mksubvol');
  try {
    await promisify(execFile)('gcc', ['-static', '-O2', '-o', out, SOURCE]);
    return out;
  } catch {
    return null;
  }
}
