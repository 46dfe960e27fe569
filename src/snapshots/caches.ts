import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readlink, rename, stat, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError, toMessage } from '../errors.js';
import { createSerializeByKey } from '../serialize-by-key.js';
import { run } from './exec.js';
import type { SnapshotDriver } from './snapshot-driver.js';
import { toPathSegment } from './workspaces.js';

/**
 * Whose caches a build uses: its repository's (every trusted build of it: branches, tags,
 * pull requests from the repository itself), or, for a pull request from a fork, that pull
 * request's own, which starts empty and never becomes the repository's.
 */
export type CacheScope = { kind: 'repository' } | { kind: 'pull'; number: number };

/** The repository and scope of a set of caches. */
export interface CacheOwner {
  owner: string;
  repo: string;
  scope: CacheScope;
}

/** One cache as a build uses it: its own writable snapshot of the cache's head. */
export interface PreparedCache {
  /** absolute directory in the container, as the definition lists it */
  path: string;
  /** the build's snapshot on the host, mounted read-write at `path` */
  hostPath: string;
  /** the build whose snapshot is the cache's head this one was made from; null: it starts empty */
  parentBuildId: string | null;
  /** bytes the head held when it was over the cap and so not used (the build starts empty); else null */
  droppedHeadBytes: number | null;
  /** the most bytes the cache may hold */
  capBytes: number;
  /**
   * how the cap holds: `qgroup`: a Btrfs qgroup limit on the snapshot's referenced bytes, so
   * a write past it fails (EDQUOT), and the promotion checks it; `promotion`: only checked
   * before the promotion (the copy driver, or Btrfs without quotas)
   */
  enforcedBy: 'qgroup' | 'promotion';
}

/** What became of one build's cache once it ended. */
export type CacheOutcome =
  | { path: string; result: 'promoted'; bytes: number }
  | { path: string; result: 'over-cap'; bytes: number; capBytes: number }
  | { path: string; result: 'superseded'; headBuildId: string }
  | { path: string; result: 'failed'; reason: string };

/** What one collection pass of {@link Caches.collect} removed. */
export interface CacheCollection {
  /** repository or pull-request scopes removed with every cache in them */
  scopesRemoved: number;
  /** build snapshots removed (left behind, or part of a removed scope) */
  snapshotsRemoved: number;
}

/** Name of the file whose mtime says when a build last used a scope's caches (names of caches never start with `+`). */
const USED_MARK = '+used';
/** Name of a cache's head link (build ids always hold a `-`). */
const HEAD = 'head';

/**
 * The directory name of the cache at container path `path`: its segments joined by `+`
 * (`/root/.npm` → `root+.npm`), unambiguous since a cache path's alphabet has no `+`.
 * @throws AppError `UNSAFE_INPUT` for a path that is not a valid cache path (see `mountTargetSchema`)
 */
export function toCacheName(path: string): string {
  if (!/^(\/[A-Za-z0-9._@-]+)+$/.test(path) || path.split('/').some((s) => s === '.' || s === '..')) {
    throw new AppError('UNSAFE_INPUT', `not a cache path: ${JSON.stringify(path.slice(0, 200))}`, { status: 400 });
  }
  return path.slice(1).split('/').join('+');
}

/** The directory name of a scope: `repository`, or `pull-<number>` for a fork's pull request. */
export function toScopeName(scope: CacheScope): string {
  switch (scope.kind) {
    case 'repository':
      return 'repository';
    case 'pull':
      if (!Number.isSafeInteger(scope.number) || scope.number < 1)
        throw new AppError('UNSAFE_INPUT', `not a pull request number: ${scope.number}`, { status: 400 });
      return `pull-${scope.number}`;
    default: {
      const unreachable: never = scope;
      return unreachable;
    }
  }
}

/**
 * How close to its cap a cache under a qgroup limit must be to count as full: a write that
 * hits EDQUOT leaves the usage just under the limit (see the same slack in workspaces.ts).
 */
const capSlack = (capBytes: number) => Math.min(1024 * 1024, Math.floor(capBytes / 16));

/**
 * Persistent caches of builds (a definition's `caches`: `/root/.npm`, `/root/.ccache`, …),
 * kept as the workspace lineage is, per repository instead of per branch.
 *
 * Lifecycle: {@link Caches.prepare} makes each cache of a build a writable snapshot of the
 * cache's head (or an empty one), which the build mounts and writes to alone; when the build
 * succeeds {@link Caches.promote} makes its snapshot the head (atomically: a symlink renamed
 * over the old one), unless it is over its cap or a newer build's snapshot is the head already;
 * every other end {@link Caches.discard}s it. So concurrent builds never see each other's
 * writes, and a build that failed, was cancelled or errored never changes a cache. A head
 * that lost its place is removed after the swap; what a crash leaves is removed by
 * {@link Caches.recover} (at start) or {@link Caches.collect} (retention).
 */
export interface Caches {
  /**
   * Makes the snapshots of build `buildId` for each of `paths` (container paths, validated)
   * and marks the scope used now. With a cap the driver can enforce (Btrfs with quotas on),
   * each snapshot gets a qgroup limit of `capBytes` on its whole size; a head already over
   * `capBytes` (a cap lowered since) is not used: the cache starts empty. On an error the
   * snapshots made so far are removed.
   * @throws AppError `SNAPSHOT_FAILED` when a snapshot cannot be made; `UNSAFE_INPUT` for a bad path or scope
   */
  prepare(input: CacheOwner & { buildId: string; paths: readonly string[]; capBytes: number }): Promise<PreparedCache[]>;
  /**
   * Promotes each of the build's snapshots (see the lifecycle above) and removes those not
   * promoted. Never throws: a cache that cannot be measured or moved is a `failed` outcome and
   * stays as it was.
   */
  promote(input: CacheOwner & { buildId: string; caches: readonly PreparedCache[] }): Promise<CacheOutcome[]>;
  /**
   * Removes the build's snapshots, leaving every head as it was (idempotent).
   * @throws AppError `SNAPSHOT_FAILED` naming the first that could not be removed, after trying all
   */
  discard(caches: readonly PreparedCache[]): Promise<void>;
  /**
   * At start, before any build runs: removes every snapshot that is not a cache's head (what a
   * crash between a build's end and its clean-up left). Returns how many it removed.
   * @throws AppError `SNAPSHOT_FAILED` when one cannot be removed
   */
  recover(): Promise<number>;
  /**
   * Retention: removes every scope not used by a build since `usedBefore` (ms since the epoch)
   * with all its caches, and in the others every snapshot that is neither a head nor one of
   * the `running` builds'. Snapshots of `running` builds are never touched.
   * @throws AppError `SNAPSHOT_FAILED` when one cannot be removed (the pass stops there; the next tries again)
   */
  collect(input: { usedBefore: number; running: ReadonlySet<string> }): Promise<CacheCollection>;
}

/**
 * Creates the caches over `root` (`<dataDir>/caches`). Layout, every segment encoded by
 * `toPathSegment` except the cache name ({@link toCacheName}):
 * `<root>/<owner>/<repo>/<scope>/<cache name>/<build-id>` for snapshots,
 * `<root>/<owner>/<repo>/<scope>/<cache name>/head` → `<build-id>` for heads and
 * `<root>/<owner>/<repo>/<scope>/+used` (its mtime: when a build last started or succeeded with the scope).
 * Snapshots and promotions of one cache are serialised within the process. `du` measures a
 * cache whose cap no qgroup holds.
 */
export function createCaches(options: { root: string; driver: SnapshotDriver; du?: string }): Caches {
  const { root, driver } = options;
  const du = options.du ?? 'du';
  const serial = createSerializeByKey();
  const scopeDir = (o: CacheOwner) => join(root, toPathSegment(o.owner), toPathSegment(o.repo), toScopeName(o.scope));

  async function headOf(dir: string): Promise<string | null> {
    try {
      return decodeURIComponent(await readlink(join(dir, HEAD)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  /** Puts the cap on `path` as a qgroup limit when the driver can; else it is checked at promotion. */
  async function limit(path: string, capBytes: number): Promise<PreparedCache['enforcedBy']> {
    if (driver.quota === undefined) return 'promotion';
    try {
      await driver.quota.limit(path, capBytes, 'referenced');
      return 'qgroup';
    } catch {
      // quotas are off on this filesystem (builds.diskQuotaMiB: 0): the promotion checks the size
      return 'promotion';
    }
  }

  /** Bytes the cache at `path` holds: its qgroup's referenced bytes, or what `du` counts. */
  async function sizeOf(path: string, enforcedBy: PreparedCache['enforcedBy']): Promise<number> {
    if (enforcedBy === 'qgroup' && driver.quota !== undefined) return (await driver.quota.usage(path)).referencedBytes;
    const out = await run(du, ['-s', '-x', '--block-size=1', '--', path]);
    const bytes = Number(/^(\d+)\s/.exec(out)?.[1]);
    if (!Number.isFinite(bytes)) throw new AppError('SNAPSHOT_FAILED', `du gave no size for ${path}: ${out.slice(0, 200)}`);
    return bytes;
  }

  const isOverCap = (bytes: number, cache: Pick<PreparedCache, 'capBytes' | 'enforcedBy'>) =>
    cache.enforcedBy === 'qgroup' ? bytes >= cache.capBytes - capSlack(cache.capBytes) : bytes > cache.capBytes;

  async function prepareOne(dir: string, path: string, buildId: string, capBytes: number): Promise<PreparedCache> {
    await mkdir(dir, { recursive: true });
    const hostPath = join(dir, toPathSegment(buildId));
    const parentBuildId = await serial(dir, async () => {
      const head = await headOf(dir);
      if (head === null) await driver.create(hostPath);
      else await driver.snapshot(join(dir, toPathSegment(head)), hostPath);
      return head;
    });
    const prepared: PreparedCache = { path, hostPath, parentBuildId, droppedHeadBytes: null, capBytes, enforcedBy: await limit(hostPath, capBytes) };
    if (parentBuildId === null) return prepared;
    const bytes = await sizeOf(hostPath, prepared.enforcedBy);
    if (!isOverCap(bytes, prepared)) return prepared;
    // the cap was lowered below what the head holds: under a qgroup every write would fail
    await driver.remove(hostPath);
    await driver.create(hostPath);
    return { ...prepared, parentBuildId: null, droppedHeadBytes: bytes, enforcedBy: await limit(hostPath, capBytes) };
  }

  async function discard(caches: readonly PreparedCache[]): Promise<void> {
    let first: unknown;
    for (const cache of caches) {
      try {
        await driver.remove(cache.hostPath);
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== undefined) throw new AppError('SNAPSHOT_FAILED', `a cache snapshot could not be removed: ${toMessage(first)}`, { cause: first });
  }

  async function promoteOne(dir: string, buildId: string, cache: PreparedCache): Promise<CacheOutcome> {
    const { path } = cache;
    let bytes: number;
    try {
      bytes = await sizeOf(cache.hostPath, cache.enforcedBy);
    } catch (err) {
      await driver.remove(cache.hostPath).catch(() => undefined);
      return { path, result: 'failed', reason: `its size could not be read: ${toMessage(err)}` };
    }
    if (isOverCap(bytes, cache)) {
      await driver.remove(cache.hostPath).catch(() => undefined);
      return { path, result: 'over-cap', bytes, capBytes: cache.capBytes };
    }
    const link = join(dir, HEAD);
    let moved: { promoted: true; previous: string | null } | { promoted: false; head: string };
    try {
      moved = await serial(dir, async () => {
        const current = await headOf(dir);
        // build ids sort by age: a head only moves forward
        if (current !== null && current > buildId) return { promoted: false, head: current } as const;
        const temp = `${link}.${randomBytes(6).toString('hex')}.tmp`;
        await symlink(toPathSegment(buildId), temp);
        try {
          await rename(temp, link);
        } catch (err) {
          await unlink(temp).catch(() => undefined);
          throw err;
        }
        return { promoted: true, previous: current } as const;
      });
    } catch (err) {
      await driver.remove(cache.hostPath).catch(() => undefined);
      return { path, result: 'failed', reason: toMessage(err) };
    }
    if (!moved.promoted) {
      await driver.remove(cache.hostPath).catch(() => undefined);
      return { path, result: 'superseded', headBuildId: moved.head };
    }
    // no build can start from the old head any more (snapshots are taken under the same lock);
    // one that cannot be removed now is collected later
    if (moved.previous !== null && moved.previous !== buildId) await driver.remove(join(dir, toPathSegment(moved.previous))).catch(() => undefined);
    return { path, result: 'promoted', bytes };
  }

  /** Subdirectory names of `dir` (none when it does not exist). */
  async function directories(dir: string): Promise<string[]> {
    const entries = await readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err)));
    return entries.filter((e) => e.isDirectory()).map((e) => e.name);
  }

  /** Every scope directory: `<root>/<owner>/<repo>/<scope>`. */
  async function* scopes(): AsyncGenerator<string> {
    for (const owner of await directories(root)) {
      for (const repo of await directories(join(root, owner))) {
        for (const scope of await directories(join(root, owner, repo))) yield join(root, owner, repo, scope);
      }
    }
  }

  /** Marks the scope at `dir` used now. */
  async function markUsed(dir: string): Promise<void> {
    const mark = join(dir, USED_MARK);
    const now = new Date();
    await utimes(mark, now, now).catch(() => writeFile(mark, ''));
  }

  /** ms since the epoch when a build last used the scope at `dir`; 0 when never marked. */
  async function usedAt(dir: string): Promise<number> {
    return stat(join(dir, USED_MARK)).then(
      (s) => s.mtimeMs,
      () => 0,
    );
  }

  /**
   * Removes in the cache at `dir`, under its lock, every snapshot that is not its head (the
   * head too, with its link, when `everything`) and not of a `running` build.
   */
  async function sweep(dir: string, everything: boolean, running: ReadonlySet<string>): Promise<{ removed: number; kept: number }> {
    return serial(dir, async () => {
      const head = await headOf(dir);
      let removed = 0;
      let kept = 0;
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        const name = entry.name;
        if (name === HEAD || name.startsWith(`${HEAD}.`)) {
          if (everything || name !== HEAD) await unlink(join(dir, name)).catch(() => undefined);
          else kept++;
          continue;
        }
        const buildId = decodeURIComponent(name);
        if (running.has(buildId) || (!everything && buildId === head)) {
          kept++;
          continue;
        }
        await driver.remove(join(dir, name));
        removed++;
      }
      return { removed, kept };
    });
  }

  return {
    prepare({ buildId, paths, capBytes, ...owner }) {
      const dir = scopeDir(owner);
      // one scope's preparations and its collection never interleave (see `collect`)
      return serial(`scope:${dir}`, async () => {
        await mkdir(dir, { recursive: true });
        await markUsed(dir);
        const prepared: PreparedCache[] = [];
        try {
          for (const path of paths) prepared.push(await prepareOne(join(dir, toCacheName(path)), path, buildId, capBytes));
        } catch (err) {
          await discard(prepared).catch(() => undefined);
          throw err;
        }
        return prepared;
      });
    },
    async promote({ buildId, caches, ...owner }) {
      const dir = scopeDir(owner);
      // a scope is used until its last build ends, not only when one starts
      await markUsed(dir).catch(() => undefined);
      const outcomes: CacheOutcome[] = [];
      for (const cache of caches) outcomes.push(await promoteOne(join(dir, toCacheName(cache.path)), buildId, cache));
      return outcomes;
    },
    discard,
    async recover() {
      let removed = 0;
      for await (const dir of scopes()) {
        for (const cache of await directories(dir)) removed += (await sweep(join(dir, cache), false, new Set())).removed;
      }
      return removed;
    },
    async collect({ usedBefore, running }) {
      const report: CacheCollection = { scopesRemoved: 0, snapshotsRemoved: 0 };
      for await (const dir of scopes()) {
        await serial(`scope:${dir}`, async () => {
          const stale = (await usedAt(dir)) < usedBefore;
          let kept = 0;
          for (const cache of await directories(dir)) {
            const swept = await sweep(join(dir, cache), stale, running);
            report.snapshotsRemoved += swept.removed;
            kept += swept.kept;
          }
          if (stale && kept === 0) {
            await driver.remove(dir);
            report.scopesRemoved++;
          }
        });
      }
      return report;
    },
  };
}
