import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { createCheckout, toGitHost, type Checkout } from '../builds/checkout.js';
import type { Coordinator } from '../builds/coordinator.js';
import { createCoordinator } from '../builds/create-coordinator.js';
import type { BuildEvents } from '../builds/build-events.js';
import type { BuildReporter } from '../builds/build-reporter.js';
import { createMirrorRefs } from '../builds/mirror-refs.js';
import { createRetention, type Retention } from '../builds/retention.js';
import { createSecretMasker } from '../builds/secret-masker.js';
import type { Config } from '../config/schema.js';
import type { ConfigRepository } from '../config-repo/config-repository.js';
import { readGitHubAppKey, toKeyMaskValues } from '../github/github-app-auth.js';
import type { GitHubAuth } from '../github/github-auth.js';
import type { Logger } from '../logger.js';
import { createDockerRunner, type DockerRunner } from '../runner/docker-runner.js';
import type { Storage } from './open-storage.js';
import { createWorkerDispatch, type WorkerDispatch } from './worker-dispatch.js';

/** The parts that make and keep builds: git, Docker, the coordinator and retention. */
export interface BuildParts {
  checkout: Checkout;
  runner: DockerRunner;
  coordinator: Coordinator;
  retention: Retention;
  /** the build workers and their dispatcher in bullmq mode; null in local mode */
  workers: WorkerDispatch | null;
}

/**
 * Creates the build parts from `config` over `storage`: the Docker runner (its containers
 * labelled with this instance, derived from `dataDir`), the git checkout with its mirrors in
 * `<dataDir>/git`, the coordinator with the build policy of `config`, and retention.
 * Nothing is started: {@link Coordinator.resume} and {@link Retention.recover} are the caller's.
 */
export async function createBuilds(options: {
  config: Readonly<Config>;
  dataDir: string;
  storage: Storage;
  configRepository: ConfigRepository;
  /** where builds are reported on GitHub (commit statuses, check runs or both) */
  reports: BuildReporter;
  events: BuildEvents;
  webhookSecret: string;
  /** the server's GitHub credentials: git's token for the GitHub host, per repository */
  auth: GitHubAuth;
  log: Logger;
}): Promise<BuildParts> {
  const { config, dataDir, storage, configRepository, reports, events, log } = options;
  const { store, logs, workspaces, caches, artifacts, reserve, deadRefs } = storage;
  const retention = createRetention({
    store,
    logs,
    workspaces,
    caches,
    artifacts,
    reports,
    keepPerBranch: config.retention.keepPerBranch,
    artifactGraceMs: config.retention.artifactGraceSeconds * 1000,
    deadRefs,
    deadRefHeadMs: config.retention.deadRefHeadSeconds * 1000,
    mirrors: createMirrorRefs({ mirrorsDir: join(dataDir, 'git') }),
    // images built from Dockerfiles on this engine (the runner is made below; retention runs later)
    envImages: { listImages: (repository) => runner.listImages(repository), removeImage: (name) => runner.removeImage(name) },
    log: log.child({ component: 'retention' }),
  });
  // containers are labelled with this instance (its data directory), so servers sharing a
  // Docker engine only ever clean up their own
  const runner = createDockerRunner({
    socketPath: config.docker.socketPath,
    limits: config.docker,
    instance: createHash('sha256').update(dataDir).digest('hex').slice(0, 16),
    log: log.child({ component: 'runner' }),
    maxOutputBytesPerSecond: config.builds.maxOutputBytesPerSecond,
  });
  const checkout = createCheckout({
    mirrorsDir: join(dataDir, 'git'),
    timeoutMs: config.builds.gitTimeoutSeconds * 1000,
    credentials: { host: toGitHost(config.github.apiUrl), tokenFor: (repository) => options.auth.gitTokenFor(repository) },
  });
  // a key that cannot be read is the GitHub side's error to report; there is nothing to mask then
  const appKey = config.github.app === undefined ? [] : await readGitHubAppKey(config.github.app).then(toKeyMaskValues, () => []);
  const policy = {
    defaultImage: config.docker.defaultImage,
    defaultTimeoutSeconds: config.builds.defaultTimeoutSeconds,
    maxTimeoutSeconds: config.builds.maxTimeoutSeconds,
    outputTimeoutSeconds: config.builds.outputTimeoutSeconds ?? null,
    maxResources: { memoryBytes: config.docker.memoryBytes, cpus: config.docker.cpus, pidsLimit: config.docker.pidsLimit },
    secretEnv: config.builds.secretEnv,
    maxLogBytes: config.builds.maxLogBytes,
    forkNetwork: config.builds.forkNetwork,
    diskQuotaBytes: config.builds.diskQuotaMiB > 0 ? config.builds.diskQuotaMiB * 1024 ** 2 : null,
    maxArtifactBytes: config.builds.maxArtifactBytes,
    cacheMaxBytes: config.builds.cacheMaxMiB * 1024 ** 2,
    mounts: config.builds.mounts,
  };
  const workers = config.dispatch.mode === 'bullmq' ? await createWorkerDispatch({ config, store, policy, auth: options.auth, log }) : null;
  const coordinator = createCoordinator({
    events,
    store,
    logs,
    configRepository,
    checkout,
    workspaces,
    caches,
    runner,
    artifacts,
    reports,
    log: log.child({ component: 'builds' }),
    concurrency: config.jobConcurrency,
    policy: { ...policy, cancelRunningOnSupersede: config.builds.cancelRunningOnSupersede, backlog: config.jobBacklog ?? 2 * config.jobConcurrency },
    reserve,
    mask: createSecretMasker([config.github.token, options.webhookSecret, config.api.token, ...Object.values(config.builds.secretEnv), ...appKey]),
    cloneUrlRewrites: config.cloneUrlRewrites,
    ...(workers === null ? {} : { executor: workers.dispatch }),
  });
  return { checkout, runner, coordinator, retention, workers };
}
