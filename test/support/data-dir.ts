import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';

/** The repository's data directory, which scripts/host-setup.sh puts on Btrfs. */
export const REPO_DATA_DIR = resolve(import.meta.dirname, '..', '..', 'data');

/**
 * A fresh directory for one test under `<repo>/data/test-runs/` (on the Btrfs volume when
 * host-setup has run), or under `AUTOBUILDER_TEST_DIR` when set.
 */
export async function makeTestDir(name: string): Promise<string> {
  const base = process.env['AUTOBUILDER_TEST_DIR'] ?? join(REPO_DATA_DIR, 'test-runs');
  const dir = join(base, `${name}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`);
  await mkdir(dir, { recursive: true });
  return dir;
}
