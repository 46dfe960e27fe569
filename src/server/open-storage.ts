import { join } from 'node:path';
import { createArtifactStore, type ArtifactStore } from '../artifacts/artifact-store.js';
import { createBuildLogs, type BuildLogs } from '../builds/build-log.js';
import { createDiskReserve, type DiskReserve } from '../builds/disk-reserve.js';
import type { Config } from '../config/schema.js';
import { toMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { SnapshotDriver } from '../snapshots/snapshot-driver.js';
import { createCaches, type Caches } from '../snapshots/caches.js';
import { createWorkspaces, type Workspaces } from '../snapshots/workspaces.js';
import type { BuildStore } from '../store/build-store.js';
import { createSqliteBuildStore } from '../store/sqlite-build-store.js';
import { createSqliteDeadRefs, type DeadRefs } from '../store/sqlite-dead-refs.js';
import { createSqliteCheckRunOutbox, type CheckRunOutbox } from '../store/sqlite-check-run-outbox.js';
import { createSqliteStatusOutbox, type StatusOutbox } from '../store/sqlite-status-outbox.js';
import { createSqliteWriter } from '../store/sqlite-writer.js';

/** Everything the server keeps on disk under its data directory (see DESIGN.md, data directory). */
export interface Storage {
  store: BuildStore;
  logs: BuildLogs;
  artifacts: ArtifactStore;
  workspaces: Workspaces;
  /** persistent caches of builds (`<dataDir>/caches`) */
  caches: Caches;
  /** marks of deleted refs and closed pull requests, for retention */
  deadRefs: DeadRefs;
  /** commit statuses not yet posted */
  outbox: StatusOutbox;
  /** check runs not yet created or updated */
  checkRuns: CheckRunOutbox;
  /** the free-space floor of the data volume, checked once already */
  reserve: DiskReserve;
}

/**
 * Opens the data directory `dataDir` (absolute): the SQLite stores (builds and deliveries,
 * dead refs, the status and check run outboxes: one database file, one writer thread shared by them,
 * so their changes are committed in call order; each store's `close` closes its handle and
 * the last one stops the thread), build logs, the artifact
 * store, the workspaces over `driver` (with Btrfs quotas turned on when
 * `builds.diskQuotaMiB` asks for them; failing that, builds run without one and a warning
 * says so) and the disk reserve, read once before it resolves. `freeBytes` reads the free
 * space (default statfs; tests).
 */
export async function openStorage(options: {
  config: Readonly<Config>;
  dataDir: string;
  driver: SnapshotDriver;
  log: Logger;
  freeBytes: ((dir: string) => Promise<number>) | undefined;
}): Promise<Storage> {
  const { config, dataDir, driver, log } = options;
  const path = join(dataDir, 'autobuilder.db');
  const writer = createSqliteWriter({ path });
  const store = createSqliteBuildStore({ path, writer });
  const logs = await createBuildLogs({
    dir: join(dataDir, 'logs'),
    onWriteError: (buildId, err) => log.error({ buildId, err: err.message }, 'a build log could not be written: its later lines are dropped'),
  });
  const artifacts = createArtifactStore({ root: join(dataDir, 'artifacts') });
  const workspaces = createWorkspaces({ root: join(dataDir, 'workspaces'), driver });
  const caches = createCaches({ root: join(dataDir, 'caches'), driver });
  if (config.builds.diskQuotaMiB > 0) {
    // Btrfs quotas are per filesystem: on once, they bound every workspace (see README, disk)
    await workspaces.enableQuotas().then(
      (enabled) =>
        log.info(
          { enforced: enabled, snapshotDriver: driver.name },
          enabled ? 'disk quotas of builds on' : 'disk quotas of builds cannot be enforced by this snapshot driver',
        ),
      (err: unknown) => log.warn({ err: toMessage(err) }, 'disk quotas could not be turned on: builds run without one'),
    );
  }
  const reserve = createDiskReserve({
    dir: dataDir,
    reserveBytes: config.builds.diskReserveMiB * 1024 ** 2,
    log: log.child({ component: 'disk-reserve' }),
    ...(options.freeBytes === undefined ? {} : { freeBytes: options.freeBytes }),
  });
  await reserve.check();
  const deadRefs = createSqliteDeadRefs({ path, writer: writer.share() });
  const outbox = createSqliteStatusOutbox({ path, writer: writer.share() });
  const checkRuns = createSqliteCheckRunOutbox({ path, writer: writer.share() });
  return { store, logs, artifacts, workspaces, caches, deadRefs, outbox, checkRuns, reserve };
}
