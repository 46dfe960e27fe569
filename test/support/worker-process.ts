import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createLogger } from '../../src/logger.js';
import { startWorker, type RunningWorker } from '../../src/worker/start-worker.js';
import { loadWorkerConfig, type WorkerConfigInput } from '../../src/worker/worker-config.js';

const REPO_ROOT = resolve(import.meta.dirname, '..', '..');

/** A build worker running as its own process (`src/worker/main.ts`), as on another host. */
export interface WorkerProcess {
  id: string;
  child: ChildProcess;
  /** everything it printed (JSON log lines) */
  output(): string;
  /** resolves with its exit code (or the signal's name) */
  exited: Promise<number | string>;
  /** Sends `signal`; resolves when it has exited. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/**
 * Starts a worker process with `config` (written as an .mjs module beside its data
 * directory); resolves once it says it is ready (its first heartbeat was accepted).
 * @throws Error with its output when it exits or is not ready within 30 s
 */
export async function spawnWorkerProcess(config: WorkerConfigInput & { id: string; dataDir: string }): Promise<WorkerProcess> {
  await mkdir(config.dataDir, { recursive: true });
  const file = join(config.dataDir, '..', `${config.id}.config.mjs`);
  await writeFile(file, `export default ${JSON.stringify({ logLevel: 'info', ...config })};\n`);
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'worker', 'main.ts')], {
    cwd: REPO_ROOT,
    env: { ...process.env, AUTOBUILDER_WORKER_CONFIG: file },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | string>((done) => child.on('exit', (code, signal) => done(code ?? signal ?? 'unknown')));
  const ready = new Promise<void>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`worker ${config.id} not ready in 30 s:\n${out}`)), 30_000);
    const check = () => {
      if (out.includes('"msg":"worker ready"')) {
        clearTimeout(timer);
        done();
      }
    };
    child.stdout.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      fail(new Error(`worker ${config.id} exited (${code}) before it was ready:\n${out}`));
    });
  });
  await ready;
  return {
    id: config.id,
    child,
    output: () => out,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/**
 * Starts a build worker in this process for `server`, as a test needs one: its data
 * directory `<dir>/worker-<id>`, no network for builds, heartbeats every 0.5 s, silent logs.
 * `more` overrides any setting (labels, capacity, heartbeatSeconds, redis.caPath, …).
 */
export async function startTestWorker(options: {
  id: string;
  token: string;
  serverUrl: string;
  redisUrl: string;
  dir: string;
  more?: Partial<WorkerConfigInput>;
  version?: string;
}): Promise<RunningWorker> {
  const config = loadWorkerConfig(
    {
      id: options.id,
      serverUrl: options.serverUrl,
      token: options.token,
      redis: { url: options.redisUrl },
      dataDir: join(options.dir, `worker-${options.id}`),
      docker: { network: 'none' },
      heartbeatSeconds: 0.5,
      logLevel: 'silent',
      ...options.more,
    },
    {},
  );
  return startWorker(config, { log: createLogger({ level: 'silent' }), ...(options.version === undefined ? {} : { version: options.version }) });
}
