import type { Build } from '../../src/builds/build.js';

/**
 * A stored build record for unit tests of the store, retention and statuses: a finished
 * `success` of `acme/widget` `refs/heads/main`, with `changes` applied.
 */
export function buildRecord(changes: Partial<Build> = {}): Build {
  return {
    id: 'mfx1k2p3-9f3a2c1d',
    repo: 'acme/widget',
    ref: 'refs/heads/main',
    sha: 'a'.repeat(40),
    definition: 'build',
    context: 'autobuilder/build',
    state: 'success',
    exitCode: 0,
    description: null,
    cached: false,
    coalesced: false,
    incremental: false,
    parentBuildId: null,
    cacheKey: null,
    cacheInputs: null,
    sourceBuildId: null,
    cacheMiss: null,
    configSha: null,
    worker: null,
    deliveryId: null,
    queuedAt: '2024-01-01T00:00:00.000Z',
    startedAt: null,
    finishedAt: null,
    artifacts: [],
    ...changes,
  };
}
