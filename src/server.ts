import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { createApp } from './app.js';
import { createArtifactStore } from './artifacts/artifact-store.js';
import { createBuildEvents, type BuildEvents } from './builds/build-events.js';
import { createBuildLogs } from './builds/build-log.js';
import { createCheckout, gitAuthEnv, toCloneUrl, toGitHost } from './builds/checkout.js';
import { createSecretMasker } from './builds/secret-masker.js';
import { createCoordinator, type Coordinator } from './builds/coordinator.js';
import { createDiskReserve } from './builds/disk-reserve.js';
import { createMirrorRefs } from './builds/mirror-refs.js';
import { createRetention, type Retention } from './builds/retention.js';
import type { Config } from './config/schema.js';
import { toMessage } from './errors.js';
import { formatProblem } from './config-repo/definition.js';
import { createConfigRepository, repositoryOfUrl, type ConfigRepository, type ConfigRepositorySource } from './config-repo/config-repository.js';
import { createCommitStatusPublisher, createOctokit } from './github/commit-statuses.js';
import { createWebhookRegistrar, type WebhookRegistrar } from './github/webhook-registration.js';
import type { Logger } from './logger.js';
import { createDockerRunner } from './runner/docker-runner.js';
import { detectDriver } from './snapshots/detect-driver.js';
import { createWorkspaces } from './snapshots/workspaces.js';
import { createSqliteBuildStore } from './store/sqlite-build-store.js';
import { createSqliteDeadRefs } from './store/sqlite-dead-refs.js';
import { createDeliveryWriter } from './store/delivery-writer.js';
import { createSqliteStatusOutbox } from './store/sqlite-status-outbox.js';
import type { BuildStore } from './store/build-store.js';
import { createInbox } from './webhooks/inbox.js';
import { createSignatureVerifier } from './webhooks/verify-signature.js';
import { createPageAuth } from './http/page-auth.js';
import { createHostGuard } from './http/host-guard.js';
import { createStartUpGate } from './http/start-up-gate.js';
import { createWebhookRoutes } from './http/webhook-routes.js';
import { createRouteGuards, listRoutes, type DeclaredRoute } from './http/route-access.js';
import { createMetrics } from './metrics/metrics.js';
import { createMonitorHub, toConfigSource } from './monitor/monitor-hub.js';

/** A running autobuilder server. */
export interface RunningServer {
  /** base URL it listens on, e.g. `http://127.0.0.1:8462` */
  url: string;
  /** the URL put in commit statuses (config `publicUrl`, else `url`) */
  publicUrl: string;
  /** name of the snapshot driver in use */
  snapshotDriver: 'btrfs' | 'copy';
  coordinator: Coordinator;
  store: BuildStore;
  events: BuildEvents;
  retention: Retention;
  /** the build definitions (active snapshot, reloads) */
  configRepository: ConfigRepository;
  /** every HTTP route with the access it declares (see src/http/route-access.ts) */
  routes: readonly DeclaredRoute[];
  /**
   * Stops listening and taking work, lets running builds finish for `graceMs` (default: the
   * config's `builds.shutdownGraceSeconds`), cancels what still runs, closes the store.
   * Waiting builds stay queued and are resumed by the next start.
   */
  close(options?: { graceMs?: number }): Promise<void>;
}

/**
 * Wires every part from `config` and listens on `config.listen` (port 0 picks a free one).
 * It listens early and answers from then on: while the rest starts (config fetch, orphan
 * containers, recovery) webhooks are stored and other requests get 503 (see
 * {@link createStartUpGate}); it resolves once everything answers.
 * `webhookSecret` is the resolved secret (see `ensureWebhookSecret`); `fetch` is handed to
 * Octokit (tests); `freeBytes` reads the data volume's free space (default statfs; tests).
 */
export async function startServer(
  config: Readonly<Config>,
  options: { log: Logger; webhookSecret: string; fetch?: typeof globalThis.fetch; freeBytes?: (dir: string) => Promise<number> },
): Promise<RunningServer> {
  const { log } = options;
  const dataDir = resolve(config.dataDir);
  const driver = await detectDriver(join(dataDir, 'workspaces'), config.snapshotDriver);
  log.info({ dataDir, snapshotDriver: driver.name }, 'data directory ready');

  // answers from the first request on: 503 while starting, webhooks once the inbox is open
  const gate = createStartUpGate({
    hostGuard: createHostGuard({
      listenHost: config.listen.host,
      publicUrl: config.publicUrl,
      allowedOrigins: config.pages.allowedOrigins,
      allowedHosts: config.listen.allowedHosts,
    }),
    log: log.child({ component: 'http' }),
  });
  const server: Server = createServer(gate.listener);
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(config.listen.port, config.listen.host, () => ok());
  });
  const { port } = server.address() as AddressInfo;
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  const url = `http://${host}:${port}`;
  const publicUrl = (config.publicUrl ?? url).replace(/\/+$/, '');

  const store = createSqliteBuildStore({ path: join(dataDir, 'autobuilder.db') });
  const logs = await createBuildLogs({
    dir: join(dataDir, 'logs'),
    onWriteError: (buildId, err) => log.error({ buildId, err: err.message }, 'a build log could not be written: its later lines are dropped'),
  });
  const artifacts = createArtifactStore({ root: join(dataDir, 'artifacts') });
  const configRepository = createConfigRepository({ source: toConfigRepositorySource(config), log: log.child({ component: 'config-repo' }) });
  const events = createBuildEvents();
  const metrics = createMetrics({ events, store });
  const workspaces = createWorkspaces({ root: join(dataDir, 'workspaces'), driver });
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
  const statuses = createCommitStatusPublisher({
    outbox: createSqliteStatusOutbox({ path: join(dataDir, 'autobuilder.db') }),
    writeIntervalMs: config.github.writeIntervalMs,
    apiUrl: config.github.apiUrl,
    token: config.github.token,
    publicUrl,
    log: log.child({ component: 'github' }),
    fetch: metrics.instrumentFetch(options.fetch ?? globalThis.fetch),
  });
  configRepository.onReload((outcome, status) => {
    const repository = status.source.repository;
    if (repository === null || outcome.sha === null || (outcome.outcome !== 'activated' && outcome.outcome !== 'rejected')) return;
    const [owner = '', repo = ''] = repository.split('/');
    const { problems } = outcome;
    statuses
      .publishStatus({
        buildId: `config@${outcome.sha.slice(0, 12)}`,
        owner,
        repo,
        sha: outcome.sha,
        context: 'autobuilder/config',
        state: outcome.outcome === 'activated' ? 'success' : 'error',
        targetUrl: `${publicUrl}/api/config`,
        description:
          outcome.outcome === 'activated'
            ? `Active: ${status.active?.files.length ?? 0} definition files`
            : `Refused: ${problems.length} problem${problems.length === 1 ? '' : 's'}; ${problems[0] === undefined ? '' : formatProblem(problems[0])}`,
      })
      .catch((err: unknown) => log.error({ err: toMessage(err), sha: outcome.sha }, 'config status not queued'));
  });
  const deadRefs = createSqliteDeadRefs({ path: join(dataDir, 'autobuilder.db') });
  const retention = createRetention({
    store,
    logs,
    workspaces,
    artifacts,
    statuses,
    keepPerBranch: config.retention.keepPerBranch,
    artifactGraceMs: config.retention.artifactGraceSeconds * 1000,
    deadRefs,
    deadRefHeadMs: config.retention.deadRefHeadSeconds * 1000,
    mirrors: createMirrorRefs({ mirrorsDir: join(dataDir, 'git') }),
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
    ...(config.github.token === undefined ? {} : { token: { value: config.github.token, host: toGitHost(config.github.apiUrl) } }),
  });
  const coordinator = createCoordinator({
    events,
    store,
    logs,
    configRepository,
    checkout,
    workspaces,
    runner,
    artifacts,
    statuses,
    log: log.child({ component: 'builds' }),
    concurrency: config.jobConcurrency,
    policy: {
      defaultImage: config.docker.defaultImage,
      defaultTimeoutSeconds: config.builds.defaultTimeoutSeconds,
      maxTimeoutSeconds: config.builds.maxTimeoutSeconds,
      outputTimeoutSeconds: config.builds.outputTimeoutSeconds ?? null,
      maxResources: { memoryBytes: config.docker.memoryBytes, cpus: config.docker.cpus, pidsLimit: config.docker.pidsLimit },
      cancelRunningOnSupersede: config.builds.cancelRunningOnSupersede,
      backlog: config.jobBacklog ?? 2 * config.jobConcurrency,
      secretEnv: config.builds.secretEnv,
      maxLogBytes: config.builds.maxLogBytes,
      forkNetwork: config.builds.forkNetwork,
      diskQuotaBytes: config.builds.diskQuotaMiB > 0 ? config.builds.diskQuotaMiB * 1024 ** 2 : null,
      maxArtifactBytes: config.builds.maxArtifactBytes,
    },
    reserve,
    mask: createSecretMasker([config.github.token, options.webhookSecret, config.api.token, ...Object.values(config.builds.secretEnv)]),
    cloneUrlRewrites: config.cloneUrlRewrites,
  });
  const pageAuth = createPageAuth({ credentials: config.pages.credentials });
  const deliveryWriter = await createDeliveryWriter({ path: join(dataDir, 'autobuilder.db') });
  const inbox = createInbox({ store, writer: deliveryWriter, coordinator, log: log.child({ component: 'webhooks' }) });
  const verify = createSignatureVerifier(options.webhookSecret);
  // webhooks taken in while starting are stored now and built once started (inbox.recover);
  // a closed pull request's waiting builds are cancelled once the queued ones are resumed
  let resumed: () => void = () => undefined;
  const whenResumed = new Promise<void>((ok) => (resumed = ok));
  gate.acceptWebhooks(
    createWebhookRoutes({
      access: createRouteGuards({ pageAuth, token: config.api.token }),
      verify,
      inbox,
      deadRefs,
      coordinator: { cancelPullRequest: async (target, reason) => whenResumed.then(() => coordinator.cancelPullRequest(target, reason)) },
      configRepository,
      log: log.child({ component: 'webhooks' }),
    }),
  );
  await configRepository.reload('start');
  configRepository.watch({ pollSeconds: config.configRepository.pollSeconds });
  await runner.removeOrphans();
  await retention.recover();
  const webhookRegistrar = createWebhookRegistrarFor(config, { publicUrl, webhookSecret: options.webhookSecret, fetch: options.fetch, log });
  const app = createApp({
    inbox,
    deadRefs,
    webhookRegistrar,
    configRepository,
    control: { checkout, token: config.api.token, cloneUrlRewrites: config.cloneUrlRewrites, gitHost: toGitHost(config.github.apiUrl) },
    coordinator,
    store,
    logs,
    artifacts,
    verify,
    publicUrl,
    log,
    events,
    metrics,
    pageAuth,
  });
  gate.open(app);
  // after the app's listener: socket.io passes on every request that is not its own
  const monitor = createMonitorHub({
    server,
    events,
    store,
    logs,
    auth: pageAuth,
    publicUrl,
    allowedOrigins: [url, publicUrl, ...config.pages.allowedOrigins],
    concurrency: config.jobConcurrency,
    queue: () => coordinator.queueInfo(),
    configSource: toConfigSource(config.configRepository),
    configRepository,
    log: log.child({ component: 'monitor' }),
    observeLogLag: (seconds) => metrics.observeLogLag(seconds),
  });
  log.info({ url, publicUrl }, 'listening');
  // in the background: a slow or failing GitHub never holds the start up (failures are reported, not thrown)
  if (webhookRegistrar !== null) {
    let registered = configRepository.repositories().join('\n');
    const syncFailed = (err: unknown) => log.error({ err: toMessage(err) }, 'webhook registration failed');
    webhookRegistrar.sync(configRepository.repositories()).catch(syncFailed);
    // a config revision that adds or removes a repository registers again (not every poll)
    configRepository.onReload((outcome) => {
      const repositories = configRepository.repositories();
      if (outcome.outcome !== 'activated' || repositories.join('\n') === registered) return;
      registered = repositories.join('\n');
      webhookRegistrar.sync(repositories).catch(syncFailed);
    });
  }
  await coordinator.resume();
  resumed();
  await inbox.recover();
  const retentionPass = () => void retention.run().catch((err: unknown) => log.error({ err }, 'retention pass failed'));
  const retentionTimer = setInterval(retentionPass, config.retention.intervalSeconds * 1000).unref();
  setImmediate(retentionPass);

  return {
    url,
    publicUrl,
    snapshotDriver: driver.name,
    coordinator,
    store,
    events,
    retention,
    configRepository,
    routes: listRoutes(app),
    async close(closeOptions) {
      clearInterval(retentionTimer);
      reserve.close();
      webhookRegistrar?.close();
      monitor.close();
      metrics.close();
      await new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      });
      await coordinator.shutdown(closeOptions?.graceMs ?? config.builds.shutdownGraceSeconds * 1000);
      await configRepository.close();
      await deliveryWriter.close();
      await statuses.flush();
      statuses.close();
      store.close();
      deadRefs.close();
    },
  };
}

/**
 * Where the config repository comes from: git mode when `url` or `repository` is set (the
 * URL of a `repository` is its clone URL on the GitHub host of `github.apiUrl`; either goes
 * through `cloneUrlRewrites`, and the token is sent only to the GitHub host), else the
 * local directory `path`.
 */
export function toConfigRepositorySource(config: Config): ConfigRepositorySource {
  const { url, repository, branch, path } = config.configRepository;
  if (url === undefined && repository === undefined) return { kind: 'directory', path };
  const host = toGitHost(config.github.apiUrl);
  const fetchUrl = toCloneUrl(url ?? `https://${host}/${repository}.git`, config.cloneUrlRewrites);
  const token = config.github.token === undefined ? undefined : { value: config.github.token, host };
  return {
    kind: 'git',
    url: fetchUrl,
    branch,
    repository: repository ?? repositoryOfUrl(url ?? '') ?? undefined,
    gitDir: join(resolve(config.dataDir), 'config-repo.git'),
    env: gitAuthEnv(fetchUrl, token),
  };
}

/**
 * The webhook registrar when `github.registerWebhooks` is on (hook URL `<publicUrl>/hooks/github`),
 * else null; also null, with one warning, when `publicUrl` or `github.token` is missing: GitHub
 * must reach the URL, and only a token may manage hooks.
 */
function createWebhookRegistrarFor(
  config: Readonly<Config>,
  options: { publicUrl: string; webhookSecret: string; fetch: typeof globalThis.fetch | undefined; log: Logger },
): WebhookRegistrar | null {
  if (!config.github.registerWebhooks) return null;
  const log = options.log.child({ component: 'webhook-registration' });
  const token = config.github.token;
  if (config.publicUrl === undefined || token === undefined) {
    const missing = [...(config.publicUrl === undefined ? ['publicUrl'] : []), ...(token === undefined ? ['github.token'] : [])];
    log.warn({ missing }, 'github.registerWebhooks is on but publicUrl or github.token is not set: webhooks are not registered');
    return null;
  }
  // not the metrics-instrumented fetch: its failure counter is about commit statuses
  const octokit = createOctokit({ apiUrl: config.github.apiUrl, token, log, fetch: options.fetch, writeIntervalMs: config.github.writeIntervalMs });
  return createWebhookRegistrar({ octokit, hookUrl: `${options.publicUrl}/hooks/github`, secret: options.webhookSecret, log });
}
