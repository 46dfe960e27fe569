/**
 * Workspace preparation of a 50,000-file / ~300 MB tree: a Btrfs snapshot (on the data
 * volume) against the copy driver (`cp -a` on the root filesystem, where it is what the
 * server falls back to). Goal (issue 4): snapshot ≥ 100× faster and ≤ 50 ms p95.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBtrfsDriver, createCopyDriver, isBtrfs } from '../src/snapshots/index.js';
import { makeTestDir } from '../test/support/data-dir.js';
import { formatSummary, goal, since, summarize } from './stats.js';

const FILES = 50_000;
const BYTES = 300 * 1024 * 1024;

async function fillTree(root: string): Promise<void> {
  const perFile = Math.floor(BYTES / FILES);
  const blob = randomBytes(perFile * 2);
  for (let i = 0; i < FILES; i++) {
    const dir = join(root, `d${i % 100}`, `e${Math.floor(i / 100) % 50}`);
    if (i < 5000) await mkdir(dir, { recursive: true });
    const offset = i % perFile;
    await writeFile(join(dir, `f${i}.o`), blob.subarray(offset, offset + perFile));
  }
}

/** Runs the benchmark and prints its figures. */
export async function benchSnapshots(): Promise<void> {
  console.log('\n## workspace preparation: Btrfs snapshot vs copy driver (50,000 files, ~300 MB)');
  const btrfsRoot = await makeTestDir('bench-snapshots');
  if (!(await isBtrfs(btrfsRoot))) throw new Error('run scripts/host-setup.sh: the data dir must be on Btrfs');
  const plainRoot = await mkdtemp(join(tmpdir(), 'autobuilder-bench-'));
  const btrfs = createBtrfsDriver();
  const copy = createCopyDriver();
  try {
    let t = performance.now();
    const plainSource = join(plainRoot, 'source');
    await copy.create(plainSource);
    await fillTree(plainSource);
    console.log(`  made the tree on the root filesystem in ${(since(t) / 1000).toFixed(1)} s`);
    t = performance.now();
    const btrfsSource = join(btrfsRoot, 'source');
    await btrfs.create(btrfsSource);
    await fillTree(btrfsSource);
    console.log(`  made the tree in a Btrfs subvolume in ${(since(t) / 1000).toFixed(1)} s`);

    const snapshotTimes: number[] = [];
    for (let i = 0; i < 30; i++) {
      const target = join(btrfsRoot, `snap-${i}`);
      const start = performance.now();
      await btrfs.snapshot(btrfsSource, target);
      snapshotTimes.push(since(start));
      await btrfs.remove(target);
    }
    const copyTimes: number[] = [];
    for (let i = 0; i < 3; i++) {
      const target = join(plainRoot, `copy-${i}`);
      const start = performance.now();
      await copy.snapshot(plainSource, target);
      copyTimes.push(since(start));
      await copy.remove(target);
    }
    const s = summarize(snapshotTimes);
    const c = summarize(copyTimes);
    console.log(formatSummary('btrfs snapshot', s));
    console.log(formatSummary('copy driver (cp -a, root filesystem)', c));
    const ratio = c.p50 / s.p50;
    console.log(`  ratio copy/snapshot (p50): ${ratio.toFixed(0)}×`);
    console.log(goal('snapshot ≥ 100× faster than copy', ratio >= 100));
    console.log(goal('snapshot ≤ 50 ms p95', s.p95 <= 50));
  } finally {
    await btrfs.remove(join(btrfsRoot, 'source'));
    await rm(btrfsRoot, { recursive: true, force: true });
    await rm(plainRoot, { recursive: true, force: true });
  }
}
