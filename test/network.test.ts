import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { simpleGit } from 'simple-git';
import { isAppError } from '../src/errors.js';
import { createLogger } from '../src/logger.js';
import { createDockerRunner } from '../src/runner/docker-runner.js';
import type { ContainerRunner } from '../src/runner/container-runner.js';
import { makeTestDir } from './support/data-dir.js';
import { startFixtureServer, TEST_IMAGE, type FixtureServer } from './support/fixture-server.js';
import { deliver, pullRequestPayload, pushPayload } from './support/webhook-delivery.js';

const run = promisify(execFile);
/** The network scripts/host-setup.sh makes for builds (the default of `docker.network`). */
const BUILDS_NETWORK = 'autobuilder-builds';
const METADATA_IP = '169.254.169.254';

const sh = async (...argv: string[]): Promise<string> => (await run(argv[0] as string, argv.slice(1))).stdout.trim();
/** The host's address on a Docker network's bridge (its gateway; the default bridge's IPAM does not name it). */
async function gatewayOf(network: string): Promise<string> {
  const bridge = await sh('docker', 'network', 'inspect', network, '--format', '{{index .Options "com.docker.network.bridge.name"}}');
  // `ip`, not os.networkInterfaces(): that leaves out a bridge without containers (no carrier)
  const address = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(await sh('ip', '-4', '-o', 'addr', 'show', 'dev', bridge))?.[1];
  if (address === undefined) throw new Error(`no IPv4 address on the bridge ${JSON.stringify(bridge)} of network ${network}`);
  return address;
}

/** The host's first non-loopback IPv4 address that is not a Docker bridge's. */
function hostAddress(): string {
  for (const [name, addresses] of Object.entries(networkInterfaces())) {
    if (/^(docker|br-|ab-|veth|abm)/.test(name)) continue;
    const v4 = addresses?.find((a) => a.family === 'IPv4' && !a.internal);
    if (v4 !== undefined) return v4.address;
  }
  throw new Error('this host has no non-loopback IPv4 address');
}

/**
 * A stand-in for a cloud's instance metadata service at 169.254.169.254:80, off the host like
 * the real one: in a network namespace behind a veth pair, so a container's packets to it are
 * forwarded (FORWARD chain) and masqueraded like those to any outside address.
 */
async function startMetadataStandIn(): Promise<{ close(): Promise<void> }> {
  const id = randomBytes(3).toString('hex');
  const ns = `abm-${id}`;
  const [hostSide, nsSide] = [`abm${id}h`, `abm${id}n`];
  const hostIp = '169.254.170.1';
  await sh('ip', 'netns', 'add', ns);
  let listener: ChildProcess | undefined;
  const close = async () => {
    listener?.kill('SIGKILL');
    await sh('ip', 'link', 'del', hostSide).catch(() => '');
    await sh('ip', 'netns', 'del', ns).catch(() => '');
  };
  try {
    await sh('ip', 'link', 'add', hostSide, 'type', 'veth', 'peer', 'name', nsSide);
    await sh('ip', 'link', 'set', nsSide, 'netns', ns);
    await sh('ip', 'addr', 'add', `${hostIp}/32`, 'dev', hostSide);
    await sh('ip', 'link', 'set', hostSide, 'up');
    await sh('ip', 'route', 'add', `${METADATA_IP}/32`, 'dev', hostSide, 'src', hostIp);
    const inNs = (...argv: string[]) => sh('ip', 'netns', 'exec', ns, ...argv);
    await inNs('ip', 'link', 'set', 'lo', 'up');
    await inNs('ip', 'addr', 'add', `${METADATA_IP}/32`, 'dev', nsSide);
    await inNs('ip', 'link', 'set', nsSide, 'up');
    await inNs('ip', 'route', 'add', `${hostIp}/32`, 'dev', nsSide);
    await inNs('ip', 'route', 'add', 'default', 'via', hostIp);
    // a probe that gives up resets its connection: an unhandled ECONNRESET would end the stand-in
    const script = `require('node:net').createServer((s) => s.on('error', () => {}).end('metadata\\n')).listen(80, '${METADATA_IP}', () => console.log('ready'))`;
    listener = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      listener?.stdout?.once('data', () => resolve());
      listener?.once('exit', (code) => reject(new Error(`metadata stand-in exited (${code})`)));
    });
    // the host itself reaches it through the veth pair: what a container reaches is up to iptables
    await new Promise<void>((resolve, reject) =>
      connect(80, METADATA_IP)
        .once('connect', function (this: ReturnType<typeof connect>) {
          this.destroy();
          resolve();
        })
        .once('error', reject),
    );
  } catch (err) {
    await close();
    throw err;
  }
  return { close };
}

/** Runs `script` in a busybox container through the runner; resolves with its output lines. */
async function runScript(runner: ContainerRunner, workspace: string, script: string, network?: string): Promise<string[]> {
  const lines: string[] = [];
  const result = await runner.run({
    buildId: `net-${randomBytes(4).toString('hex')}`,
    image: TEST_IMAGE,
    command: ['/bin/sh', '-c', script],
    workspace,
    workdir: '/workspace',
    env: {},
    collect: '/nonexistent',
    collectTo: join(workspace, 'collected'),
    onLines: (_stream, batch) => {
      lines.push(...batch.map((line) => line.text));
    },
    ...(network === undefined ? {} : { network }),
  });
  assert.equal(result.exitCode, 0, lines.join('\n'));
  return lines;
}

/**
 * A shell probe: prints `<name> reached` when a TCP connection to host:port opens (second try
 * after a second: a first packet may be lost while neighbours are resolved), else `<name> blocked`.
 */
const probe = (name: string, host: string, port: number) =>
  `if nc -w 3 ${host} ${port} </dev/null >/dev/null 2>&1 || { sleep 1; nc -w 3 ${host} ${port} </dev/null >/dev/null 2>&1; }; then echo "${name} reached"; else echo "${name} blocked"; fi`;

describe('the network of builds', () => {
  let server: Server;
  let port: number;
  let metadata: { close(): Promise<void> };
  let workspace: string;
  const log = createLogger({ level: 'silent' });
  const runnerOn = (network: string) =>
    createDockerRunner({
      socketPath: '/var/run/docker.sock',
      limits: { memoryBytes: 256 * 1024 ** 2, pidsLimit: 64, cpus: 1, network },
      log,
      instance: 'network-test',
    });

  before(async () => {
    // a service of the host listening on every address, like a server configured with 0.0.0.0
    server = createServer((socket) => socket.on('error', () => undefined).end('host\n'));
    await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
    port = (server.address() as { port: number }).port;
    metadata = await startMetadataStandIn();
    workspace = await makeTestDir('network');
  });
  after(async () => {
    server.close();
    await metadata.close();
  });

  const targets = async () => ({
    'host address': [hostAddress(), port] as const,
    'bridge gateway': [await gatewayOf('bridge'), port] as const,
    'builds gateway': [await gatewayOf(BUILDS_NETWORK), port] as const,
    metadata: [METADATA_IP, 80] as const,
  });

  test('a container on plain bridge reaches the host and the metadata address (what the rules take away)', async () => {
    const all = await targets();
    const lines = await runScript(
      runnerOn('bridge'),
      workspace,
      Object.entries(all)
        .map(([name, [host, p]]) => probe(name, host, p))
        .join('\n'),
    );
    assert.deepEqual(
      lines.sort(),
      Object.keys(all)
        .map((name) => `${name} reached`)
        .sort(),
    );
  });

  test('a container on the builds network reaches neither the host (0.0.0.0 listener) nor 169.254.169.254', async () => {
    const all = await targets();
    const lines = await runScript(
      runnerOn(BUILDS_NETWORK),
      workspace,
      Object.entries(all)
        .map(([name, [host, p]]) => probe(name, host, p))
        .join('\n'),
    );
    assert.deepEqual(
      lines.sort(),
      Object.keys(all)
        .map((name) => `${name} blocked`)
        .sort(),
    );
  });

  test('a container on the builds network still reaches the outside world, as the host does', async (t) => {
    const outside = 'deb.debian.org';
    const hostReaches = await new Promise<boolean>((resolve) => {
      const socket = connect(80, outside);
      socket.setTimeout(5000, () => (socket.destroy(), resolve(false)));
      socket.once('connect', () => (socket.destroy(), resolve(true))).once('error', () => resolve(false));
    });
    if (!hostReaches) {
      t.skip(`the host itself cannot reach ${outside}:80`);
      return;
    }
    assert.deepEqual(await runScript(runnerOn(BUILDS_NETWORK), workspace, probe('outside', outside, 80)), ['outside reached']);
  });

  test('a network that does not exist fails the run with an error naming host-setup.sh', async () => {
    await assert.rejects(runScript(runnerOn('autobuilder-no-such-network'), workspace, 'true'), (err: unknown) => {
      assert.ok(isAppError(err, 'CONTAINER_FAILED'));
      assert.match(err.message, /network autobuilder-no-such-network does not exist.*scripts\/host-setup\.sh/);
      return true;
    });
  });
});

describe('the network of fork builds', () => {
  let f: FixtureServer;
  before(async () => {
    f = await startFixtureServer('network-forks', { docker: { defaultImage: TEST_IMAGE, network: BUILDS_NETWORK } });
  });
  after(async () => {
    await f.close({ graceMs: 0 });
  });

  test('a pull request from a fork builds without any network (builds.forkNetwork none), a push on the builds network', async () => {
    const send = async (event: string, payload: Record<string, unknown>) => {
      const response = await deliver(f.server.url, { event, payload, secret: f.secret });
      assert.equal(response.status, 202, JSON.stringify(response.body));
    };
    const logOf = async (url: string) => (await fetch(url)).text();
    const pushSha = await f.repo.commit({ 'message.txt': 'trusted\n' }, 'trusted');
    await send('push', pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/netcheck', sha: pushSha, cloneUrl: f.cloneUrl }));
    const pushed = await f.waitForBuild((b) => b.sha === pushSha);
    assert.equal(pushed.state, 'success', pushed.description ?? '');
    assert.match(await logOf(pushed.logUrl), /interfaces: eth0 lo/);

    const forkSha = await f.repo.commit({ 'message.txt': 'from a fork\n' }, 'fork');
    await simpleGit({ baseDir: f.repo.dir }).raw(['update-ref', 'refs/pull/9/head', forkSha]);
    await send(
      'pull_request',
      pullRequestPayload({
        owner: 'acme',
        repo: 'widget',
        cloneUrl: f.cloneUrl,
        action: 'opened',
        number: 9,
        head: 'netcheck',
        sha: forkSha,
        base: 'netcheck',
        fork: 'mallory/widget',
      }),
    );
    const fork = await f.waitForBuild((b) => b.sha === forkSha);
    assert.equal(fork.state, 'success', fork.description ?? '');
    assert.match(await logOf(fork.logUrl), /interfaces: lo \n/);
  });
});
