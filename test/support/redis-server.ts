import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { makeTestDir } from './data-dir.js';

const exec = promisify(execFile);

/** Debian's binary (package redis-server, installed by scripts/host-setup.sh). */
const REDIS_SERVER = 'redis-server';
const HOST = '127.0.0.1';
/** How long a start may take until the server answers PING. */
const READY_TIMEOUT_MS = 15_000;
/** How long stop() waits after SIGTERM before it sends SIGKILL. */
const STOP_TIMEOUT_MS = 10_000;
/** Fresh ports tried when another process takes the chosen one before redis binds it. */
const PORT_ATTEMPTS = 5;
/** Bytes of the server's output kept for error messages. */
const OUTPUT_LIMIT = 16_384;

/** What kind of redis-server {@link startRedisServer} starts. */
export interface RedisServerOptions {
  /** `--requirepass`: clients must AUTH with it (the URL carries it) */
  password?: string;
  /** TLS only (no plain port), with a throwaway CA whose certificate is at `caPath` */
  tls?: boolean;
  /** append-only file with `appendfsync always`: every acknowledged write survives stop, kill and restart */
  persistence?: boolean;
}

/** A redis-server process of one test; stop it (or kill it) in `after`. */
export interface RunningRedis {
  /** `redis://[:password@]127.0.0.1:port`, or `rediss://…` for TLS (the password percent-encoded) */
  readonly url: string;
  /** TCP port on 127.0.0.1 (the TLS port in TLS mode); the same across restarts */
  readonly port: number;
  readonly password: string | undefined;
  /** the server's working directory (under data/test-runs): append-only file, TLS files */
  readonly dir: string;
  /** PEM certificate of the CA that signed the server's certificate (TLS mode only) */
  readonly caPath?: string;
  /** Stops the server if it runs, then starts it again on the same port and directory; resolves once it answers PING. */
  restart(): Promise<void>;
  /** SIGTERM, then waits for the exit (SIGKILL after 10 s). Does nothing when it is not running. */
  stop(): Promise<void>;
  /** SIGKILL (a crash: no shutdown work), then waits for the exit. Does nothing when it is not running. */
  kill(): Promise<void>;
}

/** The server exited because its port was taken between our probe and its bind. */
class PortTakenError extends Error {}

/** One redis-server process and what it printed. */
interface Launched {
  child: ChildProcess;
  /** resolves when the process has exited (or could not be spawned) */
  exited: Promise<void>;
  hasExited(): boolean;
  output(): string;
}

/**
 * Starts Debian's `redis-server` on a free port of 127.0.0.1 with a fresh directory under
 * data/test-runs, no RDB snapshots and (unless `persistence`) no append-only file, and
 * resolves once it answers PING.
 *
 * @throws Error when redis-server is missing (run scripts/host-setup.sh), exits during start-up
 *   or does not answer within 15 s; the message carries its output.
 */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RunningRedis> {
  const dir = await makeTestDir('redis');
  const tlsFiles = options.tls === true ? await makeTlsFiles(dir) : undefined;
  const ca = tlsFiles === undefined ? undefined : await readFile(tlsFiles.caPath);

  const argsFor = (port: number): string[] => [
    '--bind',
    HOST,
    ...(tlsFiles === undefined
      ? ['--port', String(port)]
      : [
          '--port',
          '0',
          '--tls-port',
          String(port),
          '--tls-cert-file',
          tlsFiles.certPath,
          '--tls-key-file',
          tlsFiles.keyPath,
          '--tls-ca-cert-file',
          tlsFiles.caPath,
          '--tls-auth-clients',
          'no',
        ]),
    '--dir',
    dir,
    '--save',
    '',
    ...(options.persistence === true ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
    ...(options.password === undefined ? [] : ['--requirepass', options.password]),
    '--daemonize',
    'no',
    '--logfile',
    '',
  ];
  const launch = async (port: number): Promise<Launched> => {
    const launched = spawnRedis(argsFor(port));
    try {
      await waitUntilReady(launched, { port, password: options.password, ca });
    } catch (err) {
      await stopProcess(launched, 'SIGKILL');
      throw err;
    }
    return launched;
  };

  let current: Launched | undefined;
  let port = 0;
  for (let attempt = 1; current === undefined; attempt++) {
    port = await findFreePort();
    try {
      current = await launch(port);
    } catch (err) {
      if (!(err instanceof PortTakenError) || attempt === PORT_ATTEMPTS) throw err;
    }
  }

  const auth = options.password === undefined ? '' : `:${encodeURIComponent(options.password)}@`;
  const running: RunningRedis = {
    url: `${tlsFiles === undefined ? 'redis' : 'rediss'}://${auth}${HOST}:${port}`,
    port,
    password: options.password,
    dir,
    ...(tlsFiles === undefined ? {} : { caPath: tlsFiles.caPath }),
    async restart() {
      await running.stop();
      // the same port: taken meanwhile only by a stranger, or for a moment by the old socket
      for (let attempt = 1; ; attempt++) {
        try {
          current = await launch(port);
          return;
        } catch (err) {
          if (!(err instanceof PortTakenError) || attempt === PORT_ATTEMPTS) throw err;
          await sleep(200);
        }
      }
    },
    async stop() {
      if (current !== undefined) await stopProcess(current, 'SIGTERM');
    },
    async kill() {
      if (current !== undefined) await stopProcess(current, 'SIGKILL');
    },
  };
  return running;
}

/** Spawns redis-server (argv, no shell), keeping the tail of its output and killing it if this process exits first. */
function spawnRedis(args: string[]): Launched {
  const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-OUTPUT_LIMIT);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  // a test process that ends without stop() must not leave a server behind
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let hasExited = false;
  const exited = new Promise<void>((resolve) => {
    child.once('error', (err) => {
      keep(Buffer.from(`${REDIS_SERVER} could not be started (${err.message}): is it installed? Run scripts/host-setup.sh\n`));
      resolve();
    });
    child.once('exit', () => resolve());
  }).finally(() => {
    hasExited = true;
    process.removeListener('exit', killOnExit);
  });
  return { child, exited, hasExited: () => hasExited, output: () => output };
}

/** Resolves once the server answers PING; rejects when it exits first or the time is up. */
async function waitUntilReady(launched: Launched, target: { port: number; password: string | undefined; ca: Buffer | undefined }): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError = 'no answer yet';
  for (;;) {
    if (launched.hasExited()) {
      const output = launched.output();
      const message = `redis-server exited during start-up (${launched.child.exitCode ?? launched.child.signalCode ?? 'not started'}):\n${output}`;
      throw /Address already in use/.test(output) ? new PortTakenError(message) : new Error(message);
    }
    if (Date.now() > deadline) throw new Error(`redis-server did not answer PING within ${READY_TIMEOUT_MS} ms (${lastError}):\n${launched.output()}`);
    const client = new Redis({
      host: HOST,
      port: target.port,
      ...(target.password === undefined ? {} : { password: target.password }),
      ...(target.ca === undefined ? {} : { tls: { ca: target.ca } }),
      lazyConnect: true,
      connectTimeout: 1_000,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
    });
    // failures are read from connect() and ping(): no unhandled 'error' event noise
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.ping();
      return;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    } finally {
      client.disconnect();
    }
    await sleep(50);
  }
}

/** Sends `signal` unless the process has exited; after SIGTERM, SIGKILL when it is still there after 10 s. */
async function stopProcess(launched: Launched, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  const { child } = launched;
  if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
    child.kill(signal);
    if (signal === 'SIGTERM') {
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await launched.exited.finally(() => clearTimeout(timer));
    }
  }
  await launched.exited;
}

/** A port that was free on 127.0.0.1 a moment ago (bound to port 0, then closed). */
async function findFreePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve());
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no TCP address from listen(0)');
  return address.port;
}

/** Paths of the throwaway TLS files in a server's directory. */
interface TlsFiles {
  caPath: string;
  certPath: string;
  keyPath: string;
}

/** Makes a CA and a server certificate for 127.0.0.1 and localhost it signed (P-256 keys, valid 2 days) with openssl. */
async function makeTlsFiles(dir: string): Promise<TlsFiles> {
  const files = { caPath: join(dir, 'ca.crt'), certPath: join(dir, 'server.crt'), keyPath: join(dir, 'server.key') };
  const caKey = join(dir, 'ca.key');
  const csr = join(dir, 'server.csr');
  const config = join(dir, 'openssl.cnf');
  // our own config file: the system one's x509 extensions would clash with ours
  await writeFile(
    config,
    [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      '[dn]',
      'CN = autobuilder test',
      '[ca_ext]',
      'basicConstraints = critical, CA:TRUE',
      'keyUsage = critical, keyCertSign, cRLSign',
      'subjectKeyIdentifier = hash',
      '[server_ext]',
      'basicConstraints = CA:FALSE',
      'keyUsage = critical, digitalSignature, keyEncipherment',
      'extendedKeyUsage = serverAuth',
      'subjectAltName = IP:127.0.0.1, DNS:localhost',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
      '',
    ].join('\n'),
  );
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await exec('openssl', [
    'req',
    '-config',
    config,
    '-x509',
    '-extensions',
    'ca_ext',
    ...newKey,
    '-keyout',
    caKey,
    '-out',
    files.caPath,
    '-days',
    '2',
    '-subj',
    '/CN=autobuilder test CA',
  ]);
  await exec('openssl', ['req', '-config', config, '-new', ...newKey, '-keyout', files.keyPath, '-out', csr, '-subj', '/CN=127.0.0.1']);
  await exec('openssl', [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    files.caPath,
    '-CAkey',
    caKey,
    '-set_serial',
    `0x${randomBytes(8).toString('hex')}`,
    '-days',
    '2',
    '-extfile',
    config,
    '-extensions',
    'server_ext',
    '-out',
    files.certPath,
  ]);
  return files;
}
