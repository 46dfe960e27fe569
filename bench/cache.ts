/**
 * Issue 4 benchmarks over the real server, Docker and Btrfs:
 * - an identical push after a successful build (cache hit) against a cold build of the same
 *   definition, from sending the webhook to the `success` status reaching the GitHub
 *   stand-in. Goal: cache hit ≤ 100 ms p95, no container started.
 * - a C project with many object files: an incremental rebuild after a one-file change
 *   against a clean build of the same commit.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig } from '../src/config/index.js';
import type { BuildView } from '../src/http/build-view.js';
import { createLogger } from '../src/logger.js';
import { startServer } from '../src/server.js';
import { makeTestDir } from '../test/support/data-dir.js';
import { containersCreated, nextWholeSecond } from '../test/support/docker-events.js';
import { startFixtureServer } from '../test/support/fixture-server.js';
import { createGitRepository } from '../test/support/git-repository.js';
import { startGitHubStandIn, type RecordedRequest } from '../test/support/github-stand-in.js';
import { deliver, pushPayload } from '../test/support/webhook-delivery.js';
import { formatSummary, goal, since, summarize } from './stats.js';

const successFor = (sha: string) => (r: RecordedRequest) =>
  r.operationId === 'repos/create-commit-status' && r.params['sha'] === sha && (r.body as { state: string }).state !== 'pending';

/** Cache hit vs cold build, webhook → final status. */
export async function benchCacheHit(): Promise<void> {
  console.log('\n## identical push after a success: cache hit vs cold build (webhook → final status)');
  const f = await startFixtureServer('bench-cache');
  try {
    const push = async (sha: string): Promise<number> => {
      const payload = pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, tree: await f.repo.treeOf(sha), cloneUrl: f.cloneUrl });
      const start = performance.now();
      const response = await deliver(f.server.url, { event: 'push', secret: f.secret, payload });
      if (response.status !== 202) throw new Error(`webhook answered ${response.status}`);
      const [status] = await f.github.waitFor(successFor(sha), 1, 120_000);
      if ((status?.body as { state: string } | undefined)?.state !== 'success') throw new Error(`build of ${sha} did not succeed`);
      return since(start);
    };
    const cold: number[] = [];
    for (let i = 0; i < 10; i++) cold.push(await push(await f.repo.commit({ 'message.txt': `cold ${i}\n` }, `cold ${i}`)));
    const sinceHits = await nextWholeSecond();
    const hits: number[] = [];
    for (let i = 0; i < 40; i++) hits.push(await push(await f.repo.commitEmpty(`hit ${i}`)));
    const ids = new Set((await f.builds()).map((b) => b.id));
    const containers = (await containersCreated(sinceHits)).filter((id) => ids.has(id));
    const cached = (await f.builds()).filter((b) => b.cached).length;
    const h = summarize(hits);
    const c = summarize(cold);
    console.log(formatSummary('cache hit (same tree, new commit)', h));
    console.log(formatSummary('cold build (busybox container)', c));
    console.log(`  ratio cold/hit (p50): ${(c.p50 / h.p50).toFixed(1)}×; cached builds: ${cached}; containers started by hits: ${containers.length}`);
    console.log(goal('cache hit ≤ 100 ms p95', h.p95 <= 100));
    console.log(goal('no container started for a cache hit', containers.length === 0));
  } finally {
    await f.close();
  }
}

const C_FILES = 120;

/** A C project with `C_FILES` translation units and a Makefile. */
async function writeCProject(dir: string): Promise<void> {
  await mkdir(join(dir, 'src'), { recursive: true });
  await mkdir(join(dir, 'autobuild'), { recursive: true });
  const calls: string[] = [];
  for (let i = 0; i < C_FILES; i++) {
    const body = Array.from({ length: 40 }, (_, j) => `static double f${j}(double x) { return x * ${j + 1}.5 + ${i}; }`).join('\n');
    const sum = Array.from({ length: 40 }, (_, j) => `f${j}(x)`).join(' + ');
    await writeFile(join(dir, 'src', `unit${i}.c`), `#include <math.h>\n${body}\ndouble unit${i}(double x) { return ${sum}; }\n`);
    calls.push(`unit${i}(1.0)`);
  }
  await writeFile(
    join(dir, 'src', 'main.c'),
    `#include <stdio.h>\n${Array.from({ length: C_FILES }, (_, i) => `double unit${i}(double);`).join('\n')}\nint main(void) { printf("%f\\n", ${calls.join(' + ')}); return 0; }\n`,
  );
  await writeFile(
    join(dir, 'Makefile'),
    'CFLAGS ?= -O2\nSRCS := $(wildcard src/*.c)\nOBJS := $(SRCS:.c=.o)\n\nprogram: $(OBJS)\n\t$(CC) -o $@ $(OBJS) -lm\n\n%.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n',
  );
  await writeFile(join(dir, 'autobuild', 'build.sh'), 'set -eu\nmake -j2 program\nmkdir -p /tmp/out\ncp program /tmp/out/program\n');
}

/** Incremental rebuild after a one-file change vs a clean build of the same commit. */
export async function benchIncrementalC(): Promise<void> {
  console.log(`\n## C project with ${C_FILES + 1} object files: incremental rebuild after a one-file change vs clean build`);
  const dir = await makeTestDir('bench-cproject');
  const configDir = join(dir, 'config');
  await mkdir(join(configDir, 'bench', 'cproject'), { recursive: true });
  const definition = (tag: string, incremental: boolean) =>
    `buildscripts:\n  - autobuild/build.sh\nautobuild/build.sh:\n  baseimage: autobuilder/debian-build:bookworm\n  archives: /tmp/out\n  artifact: program\n  tag: ${tag}\n  incremental: ${incremental}\n`;
  await writeFile(join(configDir, 'bench', 'cproject', 'main.yaml'), definition('incremental', true));
  await writeFile(join(configDir, 'bench', 'cproject', 'clean.yaml'), definition('clean', false));
  const repo = await createGitRepository(join(dir, 'cproject'));
  await writeCProject(repo.dir);
  let sha = await repo.commit({}, 'the project');
  const github = await startGitHubStandIn();
  const cloneUrl = 'https://github.com/bench/cproject.git';
  const server = await startServer(
    loadConfig(
      {
        dataDir: join(dir, 'data'),
        listen: { port: 0 },
        configRepository: { path: configDir },
        github: { apiUrl: github.url, token: 'bench' },
        cloneUrlRewrites: [{ from: cloneUrl, to: repo.url }],
        logLevel: 'silent',
      },
      {},
    ),
    { log: createLogger({ level: 'silent' }), webhookSecret: 'bench' },
  );
  const build = async (ref: string): Promise<number> => {
    await deliver(server.url, {
      event: 'push',
      secret: 'bench',
      payload: pushPayload({ owner: 'bench', repo: 'cproject', ref, sha, tree: await repo.treeOf(sha), cloneUrl }),
    });
    await github.waitFor(successFor(sha), ref.endsWith('main') ? 1 : 2, 600_000);
    const builds = ((await (await fetch(`${server.url}/api/builds?repo=bench/cproject&ref=${ref}&limit=1`)).json()) as { builds: BuildView[] }).builds;
    const b = builds[0];
    if (b?.state !== 'success' || b.startedAt === null || b.finishedAt === null) throw new Error(`build ${b?.id} ended ${b?.state}: ${b?.description}`);
    return Date.parse(b.finishedAt) - Date.parse(b.startedAt);
  };
  try {
    const first = await build('refs/heads/main');
    console.log(`  first build (fresh workspace): ${(first / 1000).toFixed(1)} s`);
    const incremental: number[] = [];
    const clean: number[] = [];
    for (let i = 0; i < 3; i++) {
      sha = await repo.commit({ [`src/unit${i}.c`]: `double unit${i}(double x) { return x + ${i + 1000}; }\n` }, `change unit${i}`);
      incremental.push(await build('refs/heads/main'));
      clean.push(await build('refs/heads/clean'));
    }
    const inc = summarize(incremental);
    const cl = summarize(clean);
    console.log(formatSummary('incremental rebuild (one file changed)', inc));
    console.log(formatSummary('clean build of the same commit', cl));
    console.log(`  ratio clean/incremental (p50): ${(cl.p50 / inc.p50).toFixed(1)}×`);
  } finally {
    await server.close();
    await github.close();
  }
}
