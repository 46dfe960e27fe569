import { join, resolve } from 'node:path';
import { createApp } from './app.js';
import { createBuildEvents, type BuildEvents } from './builds/build-events.js';
import type { Coordinator } from './builds/coordinator.js';
import { gitAuthEnv, gitAuthEnvFor, toCloneUrl, toGitHost } from './builds/checkout.js';
import type { Retention } from './builds/retention.js';
import { assertHostMountsExist } from './config/host-mount.js';
import type { Config } from './config/schema.js';
import { createConfigRepository, repositoryOfUrl, type ConfigRepository, type ConfigRepositorySource } from './config-repo/config-repository.js';
import type { GitHubAuth } from './github/github-auth.js';
import { createPageAuth } from './http/page-auth.js';
import { listRoutes, type DeclaredRoute } from './http/route-access.js';
import type { Logger } from './logger.js';
import { createMetrics } from './metrics/metrics.js';
import { createMonitorHub, toConfigSource } from './monitor/monitor-hub.js';
import { createBuilds } from './server/create-builds.js';
import { createGitHubSide } from './server/github-side.js';
import { listenEarly } from './server/listen-early.js';
import { openIntake } from './server/open-intake.js';
import { openStorage } from './server/open-storage.js';
import { detectDriver } from './snapshots/detect-driver.js';
import type { BuildStore } from './store/build-store.js';

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
 * {@link listenEarly}); it resolves once everything answers.
 * `webhookSecret` is the resolved secret (see `ensureWebhookSecret`); `fetch` is handed to
 * Octokit (tests); `freeBytes` reads the data volume's free space (default statfs; tests).
 */
export async function startServer(
  config: Readonly<Config>,
  options: { log: Logger; webhookSecret: string; fetch?: typeof globalThis.fetch; freeBytes?: (dir: string) => Promise<number> },
): Promise<RunningServer> {
  const { log, webhookSecret } = options;
  const dataDir = resolve(config.dataDir);
  // before anything is opened: a host mount that cannot be made is a configuration error
  await assertHostMountsExist(config.builds.mounts);
  const driver = await detectDriver(join(dataDir, 'workspaces'), config.snapshotDriver);
  log.info({ dataDir, snapshotDriver: driver.name }, 'data directory ready');

  // construction: the listener first, so that every request is answered from now on
  const { server, gate, url, publicUrl } = await listenEarly(config, log);
  const storage = await openStorage({ config, dataDir, driver, log, freeBytes: options.freeBytes });
  const { store, logs, artifacts, deadRefs, reserve } = storage;
  // the config repository is fetched with a token of the GitHub side's, made next, asked for at each fetch (not before its first reload)
  const gitTokens: Pick<GitHubAuth, 'gitTokenFor'> = { gitTokenFor: (repository) => github.auth.gitTokenFor(repository) };
  const configRepository = createConfigRepository({ source: toConfigRepositorySource(config, gitTokens), log: log.child({ component: 'config-repo' }) });
  const events = createBuildEvents();
  const metrics = createMetrics({ events, store });
  const github = createGitHubSide({
    config,
    outbox: storage.outbox,
    checkOutbox: storage.checkRuns,
    logs,
    publicUrl,
    webhookSecret,
    fetch: metrics.instrumentFetch(options.fetch ?? globalThis.fetch),
    registrarFetch: options.fetch,
    log,
  });
  const { statuses, checks, webhookRegistrar } = github;
  const { checkout, runner, coordinator, retention, workers } = await createBuilds({
    config,
    dataDir,
    storage,
    configRepository,
    reports: github.reports,
    auth: github.auth,
    events,
    webhookSecret,
    log,
  });
  const pageAuth = createPageAuth({ credentials: config.pages.credentials });
  const githubAppId = config.github.app?.appId;
  const intake = await openIntake({
    dataDir,
    store,
    deadRefs,
    coordinator,
    configRepository,
    pageAuth,
    apiToken: config.api.token,
    webhookSecret,
    githubAppId,
    installations: github.auth,
    log,
  });

  // wiring, then the start: webhooks are taken in while the config loads and builds recover
  github.follow(configRepository);
  if (workers !== null) metrics.followWorkers(workers.registry);
  gate.acceptWebhooks(intake.routes);
  await configRepository.reload('start');
  configRepository.watch({ pollSeconds: config.configRepository.pollSeconds });
  await runner.removeOrphans();
  await retention.recover();
  const app = createApp({
    inbox: intake.inbox,
    deadRefs,
    webhookRegistrar,
    configRepository,
    control: { checkout, token: config.api.token, cloneUrlRewrites: config.cloneUrlRewrites, gitHost: toGitHost(config.github.apiUrl) },
    coordinator,
    store,
    logs,
    artifacts,
    verify: intake.verify,
    publicUrl,
    log,
    events,
    metrics,
    pageAuth,
    workers,
    maxArtifactBytes: config.builds.maxArtifactBytes,
    githubAppId,
    githubAuth: github.auth,
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
    workers: workers?.registry ?? null,
  });
  log.info({ url, publicUrl }, 'listening');
  // in the background: a slow or failing GitHub never holds the start up (failures are reported, not thrown)
  github.registerWebhooks(configRepository);
  await coordinator.resume();
  intake.resumed();
  await intake.inbox.recover();
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
      await workers?.dispatch.close();
      workers?.registry.close();
      runner.close();
      await configRepository.close();
      await intake.close();
      await statuses.flush();
      statuses.close();
      await checks.flush();
      checks.close();
      github.auth.close();
      store.close();
      deadRefs.close();
    },
  };
}

/**
 * Where the config repository comes from: git mode when `url` or `repository` is set (the
 * URL of a `repository` is its clone URL on the GitHub host of `github.apiUrl`; either goes
 * through `cloneUrlRewrites`, and the token is sent only to the GitHub host), else the
 * local directory `path`. In GitHub App mode with `auth`, the token is the installation
 * token of the repository the URL names, asked of `auth` at each fetch (it expires within
 * the hour); otherwise `github.token`.
 */
export function toConfigRepositorySource(config: Config, auth?: Pick<GitHubAuth, 'gitTokenFor'>): ConfigRepositorySource {
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
    env:
      config.github.app !== undefined && auth !== undefined
        ? async () => (await gitAuthEnvFor(fetchUrl, { host, tokenFor: (r) => auth.gitTokenFor(r) })).env
        : gitAuthEnv(fetchUrl, token),
  };
}
