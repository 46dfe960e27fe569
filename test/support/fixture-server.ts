import { join, resolve } from 'node:path';
import { loadConfig, type ConfigInput } from '../../src/config/index.js';
import type { BuildView } from '../../src/http/build-view.js';
import { createLogger } from '../../src/logger.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { makeTestDir } from './data-dir.js';
import { createGitRepository, type GitRepository } from './git-repository.js';
import { startGitHubStandIn, type GitHubStandIn } from './github-stand-in.js';

const FIXTURES = resolve(import.meta.dirname, '..', 'fixtures');

/** Image the fixture builds run in: made by scripts/host-setup.sh, starts in milliseconds. */
export const TEST_IMAGE = 'autobuilder/busybox:latest';

/** A running server wired to a GitHub stand-in, a real git repository and a config repository. */
export interface FixtureServer {
  server: RunningServer;
  github: GitHubStandIn;
  /** the `acme/widget` repository, seeded from test/fixtures/projects/widget */
  repo: GitRepository & { head: string | null };
  secret: string;
  /** clone URL the payloads carry (rewritten to `repo.url` by the server config) */
  cloneUrl: string;
  dir: string;
  /** Polls `GET /api/builds` until a build matches and has ended (or `timeoutMs` passes). */
  waitForBuild(match: (b: BuildView) => boolean, timeoutMs?: number): Promise<BuildView>;
  /** All builds the API lists for `acme/widget`. */
  builds(): Promise<BuildView[]>;
  /** Stops the server and starts a new one on the same data directory (a restart), with `changes` over its config. */
  restart(changes?: ConfigInput): Promise<void>;
  /** Closes the server (see RunningServer.close) and the stand-in. */
  close(options?: { graceMs?: number }): Promise<void>;
}

/**
 * Starts the fixture: config repository test/fixtures/config-repo, the widget project in a
 * new git repository, the GitHub stand-in as API, Docker and the Btrfs volume for real.
 */
export async function startFixtureServer(
  name: string,
  overrides: ConfigInput = {},
  serverOptions: { freeBytes?: (dir: string) => Promise<number> } = {},
): Promise<FixtureServer> {
  const dir = await makeTestDir(name);
  const github = await startGitHubStandIn();
  const repo = await createGitRepository(join(dir, 'widget'), join(FIXTURES, 'projects', 'widget'));
  const cloneUrl = 'https://github.com/acme/widget.git';
  const secret = 'it is a secret to everybody';
  const input: ConfigInput = {
    dataDir: join(dir, 'data'),
    listen: { host: '127.0.0.1', port: 0 },
    configRepository: { path: join(FIXTURES, 'config-repo') },
    github: { apiUrl: github.url, token: 'test-token' },
    docker: { defaultImage: TEST_IMAGE, network: 'none' },
    cloneUrlRewrites: [{ from: cloneUrl, to: repo.url }],
    logLevel: 'silent',
    ...overrides,
  };
  const config = loadConfig(input, {});
  const start = (changes?: ConfigInput) =>
    startServer(changes === undefined ? config : loadConfig({ ...input, ...changes }, {}), {
      log: createLogger({ level: 'silent' }),
      webhookSecret: secret,
      ...serverOptions,
    });
  const fixture: FixtureServer = {
    server: await start(),
    github,
    repo,
    secret,
    cloneUrl,
    dir,
    async builds() {
      const response = await fetch(`${fixture.server.url}/api/builds?repo=acme/widget&limit=500`);
      return ((await response.json()) as { builds: BuildView[] }).builds;
    },
    async waitForBuild(match, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = (await fixture.builds()).find(match);
        if (found !== undefined && !['queued', 'running'].includes(found.state)) return found;
        if (Date.now() > deadline) throw new Error(`no finished build matched within ${timeoutMs} ms; last seen: ${JSON.stringify(found ?? null)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async restart(changes) {
      await fixture.server.close();
      fixture.server = await start(changes);
    },
    async close(options) {
      await fixture.server.close(options);
      await github.close();
    },
  };
  return fixture;
}
