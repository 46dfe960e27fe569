/**
 * Issue 14 benchmark, persistent caches, over the real server, Docker and Btrfs, cold and
 * warm side by side in one run:
 * - a C project built with ccache (`caches: [/root/.ccache]`, fresh workspaces): a build on a
 *   fresh branch of a repository whose cache is empty, against the same commit on a fresh
 *   branch of a repository whose cache a build of the parent commit filled. Goal: warm ≥ 3×
 *   faster.
 * - `npm install` of a small project (`caches: [/root/.npm]`, `--prefer-offline`), cold
 *   against warm the same way. No npm registry is reachable from the builds' network here, so
 *   the packages come from a registry stand-in of this process on the Docker bridge (synthetic
 *   packages, each answer after BENCH_NPM_LATENCY_MS, default 0 and 50); node and npm are the
 *   host's, bound read-only into the build image with `builds.mounts`.
 * Times are the builds' own (`startedAt` → `finishedAt`: workspace, checkout, container, cache
 * snapshot and promotion) and the tool's alone (make, npm), as the build script measured it.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { loadConfig } from '../src/config/index.js';
import type { BuildView } from '../src/http/build-view.js';
import { createLogger } from '../src/logger.js';
import { startServer, type RunningServer } from '../src/server.js';
import { makeTestDir } from '../test/support/data-dir.js';
import { createGitRepository, type GitRepository } from '../test/support/git-repository.js';
import { startGitHubStandIn } from '../test/support/github-stand-in.js';
import { deliver, pushPayload } from '../test/support/webhook-delivery.js';
import { formatSummary, goal, summarize } from './stats.js';

const ROUNDS = Number(process.env['BENCH_CACHES_ROUNDS'] ?? 3);
const C_UNITS = 100;
const NPM_PACKAGES = 60;
const IMAGE = 'autobuilder/debian-build:bookworm';

/** A C project of `C_UNITS` translation units and a Makefile whose compiler is `$(CC)`. */
async function writeCProject(repo: GitRepository): Promise<void> {
  const files: Record<string, string> = {};
  const calls: string[] = [];
  for (let i = 0; i < C_UNITS; i++) {
    const body = Array.from(
      { length: 60 },
      (_, j) => `static double f${j}(double x) { double y = x; for (int k = 0; k < ${j + 3}; k++) y = y * ${j + 1}.5 + ${i} - k; return y; }`,
    ).join('\n');
    const sum = Array.from({ length: 60 }, (_, j) => `f${j}(x)`).join(' + ');
    files[`src/unit${i}.c`] =
      `#include <math.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n${body}\ndouble unit${i}(double x) { return ${sum}; }\n`;
    calls.push(`unit${i}(1.0)`);
  }
  files['src/main.c'] =
    `#include <stdio.h>\n${Array.from({ length: C_UNITS }, (_, i) => `double unit${i}(double);`).join('\n')}\nint main(void) { printf("%f\\n", ${calls.join(' + ')}); return 0; }\n`;
  files['Makefile'] =
    'CFLAGS ?= -O2\nSRCS := $(wildcard src/*.c)\nOBJS := $(SRCS:.c=.o)\n\nprogram: $(OBJS)\n\t$(CC) -o $@ $(OBJS) -lm\n\n%.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n';
  files['autobuild/build.sh'] = [
    'set -eu',
    'start=$(date +%s%N)',
    'make -j2 CC="ccache gcc" program',
    'echo "tool-ms: $(( ($(date +%s%N) - start) / 1000000 ))"',
    'ccache --show-stats | grep -E "Hits|Misses" || true',
    'mkdir -p /tmp/out && cp program /tmp/out/program',
    '',
  ].join('\n');
  await repo.commit(files, 'the C project');
}

/** A project depending on the synthetic packages' roots. */
async function writeNpmProject(repo: GitRepository): Promise<void> {
  await repo.commit(
    {
      'package.json': `${JSON.stringify({ name: 'bench-app', version: '1.0.0', private: true, dependencies: { 'bench-pkg-0': '^1.0.0', 'bench-pkg-1': '^1.0.0', 'bench-pkg-2': '^1.0.0' } }, null, 2)}\n`,
      'autobuild/npm.sh': [
        'set -eu',
        'start=$(date +%s%N)',
        'node /usr/local/lib/node_modules/npm/bin/npm-cli.js install --prefer-offline --no-audit --no-fund',
        'echo "tool-ms: $(( ($(date +%s%N) - start) / 1000000 ))"',
        'mkdir -p /tmp/out && ls node_modules | wc -l > /tmp/out/count.txt',
        '',
      ].join('\n'),
    },
    'the npm project',
  );
}

/** One synthetic package: its tarball and the packument entry of its one version. */
interface SyntheticPackage {
  name: string;
  tarball: Buffer;
  dependencies: Record<string, string>;
}

/** `NPM_PACKAGES` packages, `bench-pkg-<i>` depending on `bench-pkg-<2i+1>` and `bench-pkg-<2i+2>`, each 30 files of 2 KiB. */
async function makePackages(): Promise<SyntheticPackage[]> {
  const out: SyntheticPackage[] = [];
  for (let i = 0; i < NPM_PACKAGES; i++) {
    const name = `bench-pkg-${i}`;
    const dependencies: Record<string, string> = {};
    for (const d of [2 * i + 1, 2 * i + 2]) if (d < NPM_PACKAGES) dependencies[`bench-pkg-${d}`] = '^1.0.0';
    const tar = pack();
    const chunks: Buffer[] = [];
    tar.on('data', (c: unknown) => {
      if (Buffer.isBuffer(c)) chunks.push(c);
    });
    tar.entry({ name: 'package/package.json' }, JSON.stringify({ name, version: '1.0.0', main: 'lib/f0.js', dependencies }));
    for (let f = 0; f < 30; f++) tar.entry({ name: `package/lib/f${f}.js` }, `module.exports = ${JSON.stringify(randomBytes(1024).toString('hex'))};\n`);
    tar.finalize();
    await once(tar, 'end');
    out.push({ name, tarball: gzipSync(Buffer.concat(chunks)), dependencies });
  }
  return out;
}

/** The npm registry stand-in: packuments at `/<name>`, tarballs at `/-/<name>-1.0.0.tgz`, each answer after `latencyMs`. */
async function startRegistry(
  host: string,
  packages: SyntheticPackage[],
): Promise<{ url: string; requests: () => number; setLatency(ms: number): void; close(): Promise<void> }> {
  let requests = 0;
  let latencyMs = 0;
  const byName = new Map(packages.map((p) => [p.name, p]));
  const server: Server = createServer((req, res) => {
    requests++;
    const reply = () => {
      const path = decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/');
      const tarball = /^\/-\/(bench-pkg-\d+)-1\.0\.0\.tgz$/.exec(path)?.[1];
      const pkg = byName.get(tarball ?? path.slice(1));
      if (pkg === undefined) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
      } else if (tarball !== undefined) {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': pkg.tarball.length }).end(pkg.tarball);
      } else {
        const dist = {
          tarball: `${url}/-/${pkg.name}-1.0.0.tgz`,
          shasum: createHash('sha1').update(pkg.tarball).digest('hex'),
          integrity: `sha512-${createHash('sha512').update(pkg.tarball).digest('base64')}`,
        };
        const body = JSON.stringify({
          name: pkg.name,
          'dist-tags': { latest: '1.0.0' },
          versions: { '1.0.0': { name: pkg.name, version: '1.0.0', dependencies: pkg.dependencies, dist } },
        });
        res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      }
    };
    if (latencyMs > 0) setTimeout(reply, latencyMs);
    else reply();
  });
  server.listen(0, host);
  await once(server, 'listening');
  const url = `http://${host}:${(server.address() as AddressInfo).port}`;
  return {
    url,
    requests: () => requests,
    setLatency: (ms) => void (latencyMs = ms),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * The host's address on Docker's default bridge (`docker0`), which containers on `bridge`
 * reach (`ip`: node lists no interface that is down, and docker0 is down while no container
 * uses it).
 */
async function dockerBridgeAddress(): Promise<string> {
  const { stdout } = await promisify(execFile)('ip', ['-4', '-o', 'addr', 'show', 'dev', 'docker0']);
  const address = /\binet (\d+\.\d+\.\d+\.\d+)\//.exec(stdout)?.[1];
  if (address === undefined) throw new Error('no IPv4 address on docker0: the npm registry stand-in needs Docker’s default bridge');
  return address;
}

interface Measured {
  buildMs: number;
  toolMs: number;
  log: string;
}

/** Runs the cache benchmark and prints its figures. */
export async function benchCaches(): Promise<void> {
  console.log('\n## persistent caches: cold vs warm cache on a fresh branch (ccache, npm)');
  const dir = await makeTestDir('bench-caches');
  const configDir = join(dir, 'config');
  const github = await startGitHubStandIn();
  const packages = await makePackages();
  const registry = await startRegistry(await dockerBridgeAddress(), packages);
  const cproject = await createGitRepository(join(dir, 'cproject'));
  const npmproject = await createGitRepository(join(dir, 'npmproject'));
  await writeCProject(cproject);
  await writeNpmProject(npmproject);

  const cDefinition = `on: { branches: ['**'] }\nbuildscripts: [autobuild/build.sh]\nautobuild/build.sh:\n  archives: /tmp/out\n  artifact: program\n  incremental: false\n  caches: [/root/.ccache]\n  env: { CCACHE_DIR: /root/.ccache, CCACHE_SLOPPINESS: 'include_file_mtime,include_file_ctime' }\n`;
  const npmDefinition = `on: { branches: ['**'] }\nbuildscripts: [autobuild/npm.sh]\nautobuild/npm.sh:\n  archives: /tmp/out\n  artifact: count.txt\n  incremental: false\n  caches: [/root/.npm]\n  env: { npm_config_registry: '${registry.url}/', npm_config_update_notifier: 'false' }\n`;
  /** Repositories: `<kind>-<cold|warm>-<round>`, each with a cache of its own. */
  const repos: { name: string; repo: GitRepository }[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    for (const side of ['cold', 'warm']) {
      repos.push({ name: `ccache-${side}-${i}`, repo: cproject });
      for (const latency of [0, 50]) repos.push({ name: `npm${latency}-${side}-${i}`, repo: npmproject });
    }
  }
  for (const { name, repo } of repos) {
    await mkdir(join(configDir, 'bench', name), { recursive: true });
    await writeFile(join(configDir, 'bench', name, 'any.yaml'), repo === cproject ? cDefinition : npmDefinition);
  }
  let server: RunningServer | null = null;
  try {
    server = await startServer(
      loadConfig(
        {
          dataDir: join(dir, 'data'),
          listen: { port: 0 },
          configRepository: { path: configDir },
          github: { apiUrl: github.url, token: 'bench' },
          // the default bridge reaches the registry stand-in on the host; autobuilder-builds may not
          docker: { defaultImage: IMAGE, network: 'bridge' },
          jobConcurrency: 1,
          builds: {
            mounts: [
              { host: process.execPath, container: '/usr/local/bin/node' },
              { host: '/usr/lib/node_modules/npm', container: '/usr/local/lib/node_modules/npm' },
            ],
          },
          cloneUrlRewrites: repos.map(({ name, repo }) => ({ from: `https://github.com/bench/${name}.git`, to: repo.url })),
          logLevel: (process.env['BENCH_SERVER_LOG_LEVEL'] as 'silent' | undefined) ?? 'silent',
        },
        {},
      ),
      { log: createLogger({ level: 'silent' }), webhookSecret: 'bench' },
    );
    const running = server;
    const build = async (name: string, repo: GitRepository, branch: string, sha: string): Promise<Measured> => {
      const cloneUrl = `https://github.com/bench/${name}.git`;
      const ref = `refs/heads/${branch}`;
      const response = await deliver(running.url, {
        event: 'push',
        secret: 'bench',
        payload: pushPayload({ owner: 'bench', repo: name, ref, sha, tree: await repo.treeOf(sha), cloneUrl }),
      });
      if (response.status !== 202) throw new Error(`webhook answered ${response.status}`);
      for (const deadline = Date.now() + 900_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
        const list = (await (await fetch(`${running.url}/api/builds?repo=bench/${name}&ref=${encodeURIComponent(ref)}&limit=5`)).json()) as {
          builds: BuildView[];
        };
        const b = list.builds.find((x) => x.sha === sha);
        if (b === undefined || b.state === 'queued' || b.state === 'running') continue;
        const log = await (await fetch(b.logUrl)).text();
        if (b.state !== 'success' || b.startedAt === null || b.finishedAt === null)
          throw new Error(`build ${b.id} of ${name} ended ${b.state}: ${b.description}\n${log.slice(-3000)}`);
        return { buildMs: Date.parse(b.finishedAt) - Date.parse(b.startedAt), toolMs: Number(/^tool-ms: (\d+)$/m.exec(log)?.[1] ?? NaN), log };
      }
      throw new Error(`the build of ${name} ${branch} did not end`);
    };

    // ccache: the warm repository's cache is filled by a build of the parent commit
    const cold: Measured[] = [];
    const warm: Measured[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const parent = await cproject.commit({ 'round.txt': `${i}\n` }, `round ${i}`);
      await build(`ccache-warm-${i}`, cproject, 'main', parent);
      const sha = await cproject.commit({ [`src/unit${i}.c`]: `double unit${i}(double x) { return x + ${i + 1000}; }\n` }, `change unit${i}`);
      // alternate which side goes first, so that drift of the machine's load hits both
      const sides = i % 2 === 0 ? (['cold', 'warm'] as const) : (['warm', 'cold'] as const);
      for (const side of sides) (side === 'cold' ? cold : warm).push(await build(`ccache-${side}-${i}`, cproject, `fresh-${i}`, sha));
    }
    const hits = /Hits:\s+(\d+)\s*\/\s*(\d+)/.exec(warm[0]?.log ?? '');
    reportPair(`C project, ${C_UNITS + 1} units, make -j2 with ccache`, cold, warm);
    if (hits !== null) console.log(`  ccache in the first warm build: ${hits[1]} hits of ${hits[2]} cacheable calls`);
    const ratio = summarize(cold.map((m) => m.buildMs)).p50 / summarize(warm.map((m) => m.buildMs)).p50;
    console.log(goal('warm ccache ≥ 3× faster than cold (build p50)', ratio >= 3));

    // npm: cold and warm against the stand-in, at two latencies
    for (const latency of [0, 50]) {
      registry.setLatency(latency);
      const npmCold: Measured[] = [];
      const npmWarm: Measured[] = [];
      const requests = { cold: 0, warm: 0 };
      for (let i = 0; i < ROUNDS; i++) {
        const parent = await npmproject.commit({ 'round.txt': `${latency} ${i}\n` }, `round ${i}`);
        await build(`npm${latency}-warm-${i}`, npmproject, 'main', parent);
        const sha = await npmproject.commit({ 'README.md': `round ${latency} ${i}\n` }, `readme ${i}`);
        const sides = i % 2 === 0 ? (['cold', 'warm'] as const) : (['warm', 'cold'] as const);
        for (const side of sides) {
          const before = registry.requests();
          (side === 'cold' ? npmCold : npmWarm).push(await build(`npm${latency}-${side}-${i}`, npmproject, `fresh-${i}`, sha));
          requests[side] += registry.requests() - before;
        }
      }
      reportPair(`npm install, ${NPM_PACKAGES} packages, registry latency ${latency} ms`, npmCold, npmWarm);
      console.log(`  registry requests per install: cold ${(requests.cold / ROUNDS).toFixed(0)}, warm ${(requests.warm / ROUNDS).toFixed(0)}`);
    }
  } finally {
    await server?.close();
    await registry.close();
    await github.close();
  }
}

/** Prints cold and warm build and tool times and their ratios (p50). */
function reportPair(label: string, cold: Measured[], warm: Measured[]): void {
  const c = summarize(cold.map((m) => m.buildMs));
  const w = summarize(warm.map((m) => m.buildMs));
  const ct = summarize(cold.map((m) => m.toolMs));
  const wt = summarize(warm.map((m) => m.toolMs));
  console.log(`  ${label}`);
  console.log(formatSummary('    build, cold cache', c));
  console.log(formatSummary('    build, warm cache', w));
  console.log(formatSummary('    tool alone, cold cache', ct));
  console.log(formatSummary('    tool alone, warm cache', wt));
  console.log(`    ratio cold/warm (p50): build ${(c.p50 / w.p50).toFixed(1)}×, tool ${(ct.p50 / wt.p50).toFixed(1)}×`);
}
