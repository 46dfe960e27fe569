/**
 * Issue 3 benchmark: from the config repository's push webhook to its new definitions being
 * active, with 500 definition files (50 repositories × 10 files, exact branch files and
 * `on:` glob files), against the real server and a real git repository. Measured at the
 * monitor's socket.io `config` event (what an operator sees), side by side with the file
 * watcher of directory mode on the same 500 files. Goal: ≤ 1 s p95.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { io } from 'socket.io-client';
import type { MonitorConfigDelta } from '../src/monitor/index.js';
import { makeTestDir } from '../test/support/data-dir.js';
import { startFixtureServer, type FixtureServer } from '../test/support/fixture-server.js';
import { createGitRepository } from '../test/support/git-repository.js';
import { deliver, pushPayload } from '../test/support/webhook-delivery.js';
import { formatSummary, goal, since, summarize } from './stats.js';

const REPOSITORIES = 50;
const FILES_PER_REPOSITORY = 10;

/** File `i` of a repository at `version`: even ones are exact branch files, odd ones `on:` glob files. */
function definitionText(i: number, version: number): string {
  const on = i % 2 === 0 ? '' : `on:\n  branches: ['feature-${i}/**']\n  tags: ['v${i}.*']\n`;
  return `# version ${version}\n${on}buildscripts:\n  - build/${i}.sh\nbuild/${i}.sh:\n  archives: /out\n  artifact: a${i}.tgz\n  tag: b${i}\n  env: { LEVEL: "${i}" }\n`;
}

function definitionFiles(version: number): Record<string, string> {
  const files: Record<string, string> = {};
  for (let r = 0; r < REPOSITORIES; r++) {
    for (let i = 0; i < FILES_PER_REPOSITORY; i++) files[`org${r}/repo${r}/${i % 2 === 0 ? `branch-${i}` : `glob-${i}`}.yaml`] = definitionText(i, version);
  }
  return files;
}

/** The file run `run` changes: one exact branch file, a different repository each run. */
const changedFile = (run: number) => `org${run % REPOSITORIES}/repo${run % REPOSITORIES}/branch-0.yaml`;

/** Resolves with the next `config` event whose active sha satisfies `done`. */
function nextActivation(socket: ReturnType<typeof io>, done: (d: MonitorConfigDelta) => boolean): Promise<MonitorConfigDelta> {
  return new Promise((resolve) => {
    const on = (d: MonitorConfigDelta) => {
      if (!done(d)) return;
      socket.off('config', on);
      resolve(d);
    };
    socket.on('config', on);
  });
}

async function watching(f: FixtureServer): Promise<ReturnType<typeof io>> {
  const socket = io(f.server.url, { path: '/socket.io', transports: ['websocket'], reconnection: false, forceNew: true });
  await new Promise<void>((resolve) => socket.once('snapshot', () => resolve()).emit('watch', {}));
  return socket;
}

/** Runs the benchmark and prints its figures. */
export async function benchConfigReload(runs = 20): Promise<void> {
  console.log(`\n## config push → new definitions active (${REPOSITORIES * FILES_PER_REPOSITORY} definition files)`);
  const dir = await makeTestDir('bench-config');

  const repo = await createGitRepository(join(dir, 'config'));
  let sha = await repo.commit(definitionFiles(0), 'initial');
  const git = await startFixtureServer('bench-config-git', { configRepository: { url: repo.url, repository: 'acme/config', pollSeconds: 0 } });
  const webhook: number[] = [];
  const reloadMs: number[] = [];
  try {
    const socket = await watching(git);
    for (let i = 1; i <= runs; i++) {
      sha = await repo.commit({ [changedFile(i)]: definitionText(0, i) }, `change ${i}`);
      const expected = sha;
      const active = nextActivation(socket, (d) => d.config.sha === expected);
      const start = performance.now();
      const answer = await deliver(git.server.url, {
        event: 'push',
        secret: git.secret,
        payload: pushPayload({ owner: 'acme', repo: 'config', ref: 'refs/heads/main', sha, cloneUrl: 'https://github.com/acme/config.git' }),
      });
      if (answer.status !== 202) throw new Error(`webhook answered ${answer.status}`);
      await active;
      webhook.push(since(start));
      reloadMs.push(git.server.configRepository.status().lastReload?.durationMs ?? NaN);
    }
    socket.close();
  } finally {
    await git.close();
  }

  const local = join(dir, 'directory');
  for (const [file, text] of Object.entries(definitionFiles(0))) {
    await mkdir(dirname(join(local, file)), { recursive: true });
    await writeFile(join(local, file), text);
  }
  const directory = await startFixtureServer('bench-config-dir', { configRepository: { path: local, pollSeconds: 0 } });
  const watcher: number[] = [];
  try {
    const socket = await watching(directory);
    for (let i = 1; i <= runs; i++) {
      const before = directory.server.configRepository.status().active?.digest;
      const active = nextActivation(socket, () => directory.server.configRepository.status().active?.digest !== before);
      const start = performance.now();
      await writeFile(join(local, changedFile(i)), definitionText(0, i));
      await active;
      watcher.push(since(start));
    }
    socket.close();
  } finally {
    await directory.close();
  }

  const w = summarize(webhook);
  const d = summarize(watcher);
  console.log(formatSummary('git: push webhook → active (monitor event)', w));
  console.log(formatSummary('  of which fetch + read + validate + swap', summarize(reloadMs)));
  console.log(formatSummary('directory: file write → active (watcher)', d));
  console.log(`  ratio webhook/watcher (p50): ${(w.p50 / d.p50).toFixed(1)}× (the watcher waits a 200 ms debounce; the webhook path fetches over git)`);
  console.log(goal('config push → active ≤ 1 s p95 with 500 files', w.p95 <= 1000));
}
