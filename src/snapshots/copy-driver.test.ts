import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createCopyDriver } from './copy-driver.js';
import { runSnapshotDriverConformance } from './snapshot-driver.conformance.js';

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

runSnapshotDriverConformance(
  'copy',
  () => createCopyDriver(),
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'autobuilder-copy-driver-'));
    dirs.push(dir);
    return dir;
  },
);

test('the copy driver has the name copy', () => {
  assert.equal(createCopyDriver().name, 'copy');
});
