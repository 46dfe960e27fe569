import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import type { Build, BuildState } from '../builds/build.js';
import { createBuildEvents } from '../builds/build-events.js';
import { createBuildLogs } from '../builds/build-log.js';
import { createCoordinator } from '../builds/create-coordinator.js';
import { createRetention } from '../builds/retention.js';
import type { ConfigRepository } from '../config-repo/config-repository.js';
import type { CommitStatusPublisher } from '../github/commit-statuses.js';
import { createLogger, type Logger } from '../logger.js';
import type { ContainerRunner } from '../runner/container-runner.js';
import type { Workspaces } from '../snapshots/workspaces.js';
import type { Checkout } from '../builds/checkout.js';
import { buildRecord } from '../../test/support/build-record.js';
import { makeTestDir } from '../../test/support/data-dir.js';
import { BUILD_PAGE_SIZE, listAll, type BuildStore } from './build-store.js';
import { createSqliteBuildStore } from './sqlite-build-store.js';

/** More builds than one page: what a fixed `limit: 500` used to cut short. */
const MANY = BUILD_PAGE_SIZE * 2 + 3;

function buildOf(i: number, state: BuildState, overrides: Partial<Build> = {}): Build {
  // several builds share one queuedAt, so the cursor must order by id within it
  const queuedAt = new Date(Date.UTC(2024, 0, 1, 0, 0, Math.floor(i / 7))).toISOString();
  return buildRecord({ id: `b${String(i).padStart(6, '0')}`, state, exitCode: null, queuedAt, ...overrides });
}

/** A status publisher that only counts. */
const countingStatuses = () => {
  const published: Build[] = [];
  const statuses: CommitStatusPublisher = {
    publish: async (build) => void published.push(structuredClone(build)),
    publishStatus: async () => undefined,
    flush: async () => undefined,
    close: () => undefined,
  } as CommitStatusPublisher;
  return { statuses, published };
};

/** A coordinator over a real store and build logs; nothing else is reached by the paths tested. */
async function coordinatorOver(store: BuildStore, dir: string, statuses: CommitStatusPublisher, log: Logger) {
  const unused = <T>(): T => ({}) as T;
  return createCoordinator({
    store,
    logs: await createBuildLogs({ dir: join(dir, 'logs') }),
    configRepository: unused<ConfigRepository>(),
    checkout: unused<Checkout>(),
    workspaces: unused<Workspaces>(),
    runner: unused<ContainerRunner>(),
    artifacts: unused<ArtifactStore>(),
    reports: statuses,
    events: createBuildEvents(),
    log,
    concurrency: 1,
    policy: {
      defaultImage: 'x',
      defaultTimeoutSeconds: 60,
      maxTimeoutSeconds: 60,
      outputTimeoutSeconds: null,
      maxResources: { memoryBytes: 1, cpus: 1, pidsLimit: 1 },
      cancelRunningOnSupersede: false,
      backlog: 1,
      secretEnv: {},
      forkNetwork: 'none',
      maxLogBytes: 1024 ** 2,
      maxArtifactBytes: 1024 ** 2,
      diskQuotaBytes: null,
      cacheMaxBytes: 0,
      mounts: [],
    },
    cloneUrlRewrites: [],
  });
}

describe('SQLite build store paging', () => {
  let dir: string;
  let store: BuildStore;
  before(async () => {
    dir = await makeTestDir('store-paging');
    store = createSqliteBuildStore({ path: join(dir, 'autobuilder.db') });
  });
  after(() => store.close());

  test(`listAll returns every one of ${MANY} matching builds, newest first, each once, where one list call stops at ${BUILD_PAGE_SIZE}`, () => {
    for (let i = 0; i < MANY; i++) store.insert(buildOf(i, 'queued'));
    store.insert(buildOf(MANY, 'success'));
    assert.equal(store.list({ state: 'queued', limit: 10_000 }).length, BUILD_PAGE_SIZE);
    const all = listAll(store, { state: 'queued' });
    assert.equal(all.length, MANY);
    assert.equal(new Set(all.map((b) => b.id)).size, MANY);
    assert.deepEqual(
      all.map((b) => b.id),
      Array.from({ length: MANY }, (_, i) => buildOf(MANY - 1 - i, 'queued').id),
    );
  });
});

describe('start-up recovery pages through every build', () => {
  const log = createLogger({ level: 'silent' });

  test(`retention.recover ends all ${MANY} builds a previous process left running`, async () => {
    const dir = await makeTestDir('recover-paging');
    const store = createSqliteBuildStore({ path: join(dir, 'autobuilder.db') });
    try {
      for (let i = 0; i < MANY; i++) store.insert(buildOf(i, 'running'));
      const { statuses, published } = countingStatuses();
      const workspaces = { list: async function* () {} } as unknown as Workspaces;
      const artifacts = { removeStaleTemp: async () => 0 } as unknown as ArtifactStore;
      const retention = createRetention({
        store,
        logs: await createBuildLogs({ dir: join(dir, 'logs') }),
        workspaces,
        artifacts,
        reports: statuses,
        keepPerBranch: 20,
        artifactGraceMs: 0,
        log,
      });
      const { interrupted } = await retention.recover();
      assert.equal(interrupted, MANY);
      assert.equal(published.length, MANY);
      assert.equal(listAll(store, { state: 'running' }).length, 0);
      assert.equal(listAll(store, { state: 'error' }).length, MANY);
    } finally {
      store.close();
    }
  });

  test(`coordinator.resume decides all ${MANY} builds a previous process left queued, oldest first`, async () => {
    const dir = await makeTestDir('resume-paging');
    const store = createSqliteBuildStore({ path: join(dir, 'autobuilder.db') });
    try {
      // no stored request: each resumed build ends `error` at once, without git or Docker
      for (let i = 0; i < MANY; i++) store.insert(buildOf(i, 'queued'));
      const { statuses, published } = countingStatuses();
      const coordinator = await coordinatorOver(store, dir, statuses, log);
      assert.equal(await coordinator.resume(), MANY);
      assert.equal(listAll(store, { state: 'queued' }).length, 0);
      assert.equal(listAll(store, { state: 'error' }).length, MANY);
      assert.deepEqual(
        published.map((b) => b.id),
        Array.from({ length: MANY }, (_, i) => buildOf(i, 'queued').id),
      );
    } finally {
      store.close();
    }
  });
});
