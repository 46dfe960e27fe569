/**
 * Issue 5 chaos test: kill -9 of the server with 10 builds queued or running, then a
 * restart. Reports whether every build reached a terminal state with its final status
 * posted, and the orphan containers and workspaces left (goal: zero of each).
 */
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import Docker from 'dockerode';
import type { BuildView } from '../src/http/build-view.js';
import { INSTANCE_LABEL } from '../src/runner/index.js';
import { toPathSegment } from '../src/snapshots/index.js';
import { startGitHubStandIn } from '../test/support/github-stand-in.js';
import { deliver, pushPayload } from '../test/support/webhook-delivery.js';
import { prepareFixtureProject, startServerProcess, stopServerProcess } from './server-process.js';
import { goal } from './stats.js';

const SECRET = 'chaos-secret';

/** Runs the chaos test and prints its figures. */
export async function benchChaos(): Promise<void> {
  console.log('\n## kill -9 with 10 builds queued or running, then a restart');
  const github = await startGitHubStandIn();
  const { dataDir, configPath, cloneUrl, repo } = await prepareFixtureProject('bench-chaos', {
    github: { apiUrl: github.url, token: 'chaos-token' },
    jobConcurrency: 2,
  });
  const docker = new Docker({ socketPath: '/var/run/docker.sock' });
  let { child, url } = await startServerProcess(configPath, SECRET);
  try {
    const builds = async (): Promise<BuildView[]> =>
      ((await (await fetch(`${url}/api/builds?repo=acme/widget&limit=100`)).json()) as { builds: BuildView[] }).builds;
    const shas: string[] = [];
    for (let i = 0; i < 10; i++) {
      const sha = await repo.commit({ 'message.txt': `chaos ${i}\n` }, `chaos ${i}`);
      shas.push(sha);
      await deliver(url, {
        event: 'push',
        secret: SECRET,
        payload: pushPayload({ owner: 'acme', repo: 'widget', ref: `refs/heads/chaos/${i}`, sha, cloneUrl }),
      });
    }
    for (let i = 0; i < 200 && (await builds()).filter((b) => b.state === 'running').length < 2; i++) await new Promise((r) => setTimeout(r, 50));
    const before = await builds();
    console.log(`  at the kill: ${before.filter((b) => b.state === 'running').length} running, ${before.filter((b) => b.state === 'queued').length} queued`);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));

    const restarted = performance.now();
    ({ child, url } = await startServerProcess(configPath, SECRET));
    let after: BuildView[] = [];
    for (let i = 0; i < 1200; i++) {
      after = await builds();
      if (after.length === 10 && after.every((b) => !['queued', 'running'].includes(b.state))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const settled = (performance.now() - restarted) / 1000;
    const terminal = after.filter((b) => !['queued', 'running'].includes(b.state));
    const states = terminal.reduce<Record<string, number>>((acc, b) => ({ ...acc, [b.state]: (acc[b.state] ?? 0) + 1 }), {});
    console.log(`  after the restart: ${terminal.length}/10 builds ended within ${settled.toFixed(1)} s: ${JSON.stringify(states)}`);

    let withFinalStatus = 0;
    for (const b of terminal) {
      const final = await github
        .waitFor(
          (r) => r.operationId === 'repos/create-commit-status' && r.params['sha'] === b.sha && (r.body as { state: string }).state !== 'pending',
          1,
          30_000,
        )
        .then(
          () => true,
          () => false,
        );
      if (final) withFinalStatus++;
    }
    const instance = createHash('sha256').update(dataDir).digest('hex').slice(0, 16);
    const containers = await docker.listContainers({ all: true, filters: { label: [`${INSTANCE_LABEL}=${instance}`] } });
    const byId = new Map(after.map((b) => [b.id, b]));
    const workspaceRoot = join(dataDir, 'workspaces', 'acme', 'widget', toPathSegment('chaos'));
    const workspaces = (await readdir(workspaceRoot).catch(() => [] as string[])).filter((n) => n !== 'heads');
    const orphanWorkspaces = workspaces.filter((n) => !['success', 'failure'].includes(byId.get(decodeURIComponent(n))?.state ?? ''));
    console.log(
      `  final statuses posted: ${withFinalStatus}/${terminal.length}; orphan containers: ${containers.length}; orphan workspaces: ${orphanWorkspaces.length}`,
    );
    console.log(goal('every build terminal with its final status', terminal.length === 10 && withFinalStatus === 10));
    console.log(goal('zero orphan containers and workspaces', containers.length === 0 && orphanWorkspaces.length === 0));
  } finally {
    await stopServerProcess(child);
    await github.close();
  }
}
