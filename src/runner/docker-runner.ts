import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type Docker from 'dockerode';
import { extract } from 'tar-stream';
import { AppError, toMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { BUILD_ID_LABEL, INSTANCE_LABEL, MAX_OUTPUT_LINE_BYTES, type ContainerRunner, type ContainerSpec } from './container-runner.js';
import { createDockerEngine, isEngineName } from './docker-engine.js';
import { readDockerOutput } from './docker-output.js';
import { buildImage, listImages, removeImage } from './image-build.js';
import { createImageIdCache } from './image-id-cache.js';

/** Resource limits and network of build containers. */
export interface DockerRunnerLimits {
  /** bytes */
  memoryBytes: number;
  pidsLimit: number;
  /** CPUs, fractional allowed */
  cpus: number;
  /** Docker network name: `bridge`, `none`, `host` or a user-defined network (checked to exist before each run) */
  network: string;
  /** capabilities added back after `CapDrop: ALL` */
  capAdd?: readonly string[];
}

function statusCodeOf(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null && 'statusCode' in err ? Number((err as { statusCode: unknown }).statusCode) : undefined;
}

/** What {@link copyOut} did: copied, found nothing, or found a file over the cap (its size). */
interface CopyOutcome {
  collected: boolean;
  collectTooLarge?: number;
}

/**
 * Copies the single file at `path` of a stopped container to `to`; `collected` is false when
 * it does not exist. A file over `maxBytes` (by its tar header, or by the bytes that came)
 * is not copied: the read stops there and a partial `to` is removed.
 */
async function copyOut(container: Docker.Container, path: string, to: string, maxBytes = Number.POSITIVE_INFINITY): Promise<CopyOutcome> {
  let archive: NodeJS.ReadableStream;
  try {
    archive = await container.getArchive({ path });
  } catch (err) {
    if (statusCodeOf(err) === 404) return { collected: false };
    throw err;
  }
  const tar = extract();
  const stop = new AbortController();
  let found = false;
  let tooLarge: number | undefined;
  tar.on('entry', (header, stream, next) => {
    if (!found && header.type === 'file') {
      found = true;
      if (header.size > maxBytes) {
        tooLarge = header.size;
        // the abort destroys this entry's stream too: its error is expected
        stream.on('error', () => undefined);
        stop.abort();
        return;
      }
      let written = 0;
      const cap = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          written += chunk.length;
          // the header is Docker's, but the count guards a header that understates the data
          if (written > maxBytes) {
            tooLarge = written;
            stop.abort();
            done(new Error('artifact over the cap'));
          } else done(null, chunk);
        },
      });
      pipeline(stream, cap, createWriteStream(to)).then(
        () => next(),
        (err: Error) => (tooLarge === undefined ? next(err) : undefined),
      );
    } else {
      stream.on('end', () => next());
      stream.resume();
    }
  });
  try {
    await pipeline(archive as Readable, tar, { signal: stop.signal });
  } catch (err) {
    if (tooLarge === undefined) throw err;
  }
  if (tooLarge !== undefined) {
    await rm(to, { force: true });
    return { collected: false, collectTooLarge: tooLarge };
  }
  return { collected: found };
}

/** A {@link ContainerRunner} that holds engine resources: {@link DockerRunner.close} lets them go. */
export interface DockerRunner extends ContainerRunner {
  buildImage: NonNullable<ContainerRunner['buildImage']>;
  listImages: NonNullable<ContainerRunner['listImages']>;
  removeImage: NonNullable<ContainerRunner['removeImage']>;
  /** Ends the image events subscription and forgets remembered image ids; runs in progress are not touched. Idempotent. */
  close(): void;
}

/**
 * The build's command runs under this when containers are leased to the process (see
 * `leaseToProcess`): `sh -c` as PID 1 starts the command in the background, and a watcher
 * that reads stdin (shell builtins only: any image with /bin/sh has them) kills every other
 * process of the container (`kill -KILL -1`) at its end of file, which comes when the
 * attaching process goes away. The command's exit code is the container's.
 */
const LEASE_COMMAND = [
  '/bin/sh',
  '-c',
  // a background list's stdin is /dev/null unless redirected: fd 3 keeps the attached one
  'exec 3<&0; "$@" </dev/null & build=$!; (while read -r _; do :; done <&3; kill -KILL -1) & watcher=$!; wait "$build"; code=$?; kill "$watcher" 2>/dev/null; exit "$code"',
  'autobuilder-lease',
] as const;

/**
 * {@link ContainerRunner} over the local Docker engine (`socketPath`): image ids are
 * remembered (see {@link createImageIdCache}); the idle server's calls go through a small
 * Engine API client, and dockerode is loaded when the first build runs.
 * Images are never pulled implicitly: a missing image is an `error` naming it.
 */
export function createDockerRunner(options: {
  socketPath: string;
  limits: DockerRunnerLimits;
  log: Logger;
  instance: string;
  /** bytes of output a second a container may print; it waits in its `write` past that (default: no bound) */
  maxOutputBytesPerSecond?: number;
  /** how long a remembered image id is trusted at most, in ms (see {@link createImageIdCache}) */
  imageIdTtlMs?: number;
  /**
   * Containers end with this process (build workers): each holds its stdin open through this
   * process's attach connection, and a watcher in the container kills the build when that
   * closes. A worker killed mid-build (kill -9, a lost host connection) thus leaves no build
   * running that a retry elsewhere would run twice. Default false.
   */
  leaseToProcess?: boolean;
}): DockerRunner {
  const engine = createDockerEngine({ socketPath: options.socketPath });
  let dockerode: Promise<Docker> | null = null;
  const loadDockerode = (): Promise<Docker> =>
    (dockerode ??= import('dockerode').then(
      ({ default: Dockerode }) => new Dockerode({ socketPath: options.socketPath }),
      (err: unknown) => {
        dockerode = null;
        throw err;
      },
    ));
  const { limits, log, instance } = options;
  const images = createImageIdCache({ engine, log, ...(options.imageIdTtlMs === undefined ? {} : { ttlMs: options.imageIdTtlMs }) });
  /** containers of runs in progress in this process */
  const owned = new Set<string>();

  const unreachable = (err: unknown) => new AppError('CONTAINER_FAILED', `cannot reach Docker: ${toMessage(err)}`, { cause: err });

  /** Docker would otherwise answer a missing network with a bare 404 at create time. */
  async function assertNetworkExists(network: string): Promise<void> {
    if (network === 'none' || network === 'host' || network === 'bridge') return;
    const answer = isEngineName(network)
      ? await engine.call('GET', `/networks/${network}`).catch((err: unknown) => Promise.reject(unreachable(err)))
      : { status: 404 };
    if (answer.status === 404) {
      throw new AppError(
        'CONTAINER_FAILED',
        `Docker network ${network} does not exist (run scripts/host-setup.sh, which creates autobuilder-builds, or set docker.network)`,
      );
    }
    if (answer.status !== 200) throw new AppError('CONTAINER_FAILED', `cannot reach Docker: network inspection answered HTTP ${answer.status}`);
  }

  return {
    imageId: (image) => images.imageId(image),
    async buildImage(spec) {
      const docker = await loadDockerode().catch((err: unknown) => Promise.reject(unreachable(err)));
      // RUN steps get the builds' network, as build containers do (never the host's)
      const network = spec.network ?? limits.network;
      await assertNetworkExists(network);
      return buildImage(docker, { ...spec, network });
    },
    listImages: (repository) => listImages(engine, repository),
    removeImage: (name) => removeImage(engine, name),
    close: () => images.close(),
    async warmUp() {
      await loadDockerode().catch((err: unknown) => Promise.reject(unreachable(err)));
    },
    async removeOrphans() {
      const listed = await engine.call('GET', '/containers/json', { all: true, filters: { label: [`${INSTANCE_LABEL}=${instance}`] } });
      if (listed.status !== 200 || !Array.isArray(listed.body)) throw unreachable(`listing containers answered HTTP ${listed.status}`);
      const found = listed.body as { Id: string; Labels: Record<string, string> | null }[];
      const removed: string[] = [];
      for (const c of found) {
        if (owned.has(c.Id)) continue;
        await engine
          .call('DELETE', `/containers/${c.Id}`, { force: true, v: true })
          .then((answer) => {
            if (answer.status >= 300 && answer.status !== 404) throw new Error(`HTTP ${answer.status}`);
            removed.push(c.Labels?.[BUILD_ID_LABEL] ?? c.Id);
          })
          .catch((err: unknown) => log.warn({ err: toMessage(err), container: c.Id }, 'could not remove an orphan container'));
      }
      if (removed.length > 0) log.warn({ buildIds: removed }, 'removed containers an earlier process left');
      return removed;
    },
    async run(spec: ContainerSpec) {
      const [id, docker] = await Promise.all([images.imageId(spec.image), loadDockerode().catch((err: unknown) => Promise.reject(unreachable(err)))]);
      if (id === null) {
        throw new AppError(
          'CONTAINER_FAILED',
          `image ${spec.image} is not on this Docker engine (build or import it; scripts/host-setup.sh makes the default ones)`,
        );
      }
      const network = spec.network ?? limits.network;
      await assertNetworkExists(network);
      let container: Docker.Container;
      try {
        container = await docker.createContainer({
          Image: spec.image,
          Cmd: options.leaseToProcess === true ? [...LEASE_COMMAND, ...spec.command] : [...spec.command],
          ...(options.leaseToProcess === true ? { OpenStdin: true, StdinOnce: true, AttachStdin: true } : {}),
          WorkingDir: spec.workdir,
          Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
          Labels: { [BUILD_ID_LABEL]: spec.buildId, [INSTANCE_LABEL]: instance },
          Tty: false,
          AttachStdout: true,
          AttachStderr: true,
          NetworkDisabled: network === 'none',
          HostConfig: {
            Binds: [`${spec.workspace}:${spec.workdir}:rw`],
            // the Mounts API, unlike Binds, refuses a missing source instead of making an empty directory there
            ...(spec.mounts === undefined || spec.mounts.length === 0
              ? {}
              : { Mounts: spec.mounts.map((m) => ({ Type: 'bind' as const, Source: m.source, Target: m.target, ReadOnly: m.readOnly })) }),
            Privileged: false,
            CapDrop: ['ALL'],
            CapAdd: [...(limits.capAdd ?? [])],
            SecurityOpt: ['no-new-privileges'],
            PidsLimit: spec.resources?.pidsLimit ?? limits.pidsLimit,
            Memory: spec.resources?.memoryBytes ?? limits.memoryBytes,
            MemorySwap: spec.resources?.memoryBytes ?? limits.memoryBytes,
            NanoCpus: Math.round((spec.resources?.cpus ?? limits.cpus) * 1e9),
            NetworkMode: network,
            AutoRemove: false,
          },
        });
      } catch (err) {
        throw new AppError('CONTAINER_FAILED', `cannot create the build container: ${toMessage(err)}`, { cause: err });
      }
      owned.add(container.id);
      try {
        const stream = (options.leaseToProcess === true
          ? await container.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true })
          : await container.attach({ stream: true, stdout: true, stderr: true })) as unknown as Readable;
        const drained = readDockerOutput(stream, {
          maxLineBytes: MAX_OUTPUT_LINE_BYTES,
          maxBytesPerSecond: options.maxOutputBytesPerSecond,
          onLines: (name, lines) => spec.onLines(name, lines),
        });
        const exited = container.wait({ condition: 'next-exit' }) as Promise<{ StatusCode: number }>;
        exited.catch(() => undefined); // never awaited when the build is aborted before it starts
        if (spec.signal?.aborted) {
          stream.destroy();
          return { exitCode: 137, collected: false, aborted: true };
        }
        const kill = () => void container.kill({ signal: 'SIGKILL' }).catch(() => undefined);
        spec.signal?.addEventListener('abort', kill, { once: true });
        try {
          await container.start();
          // an abort that came while the container was starting found nothing to kill yet
          if (spec.signal?.aborted) kill();
          const { StatusCode } = await exited;
          await drained;
          if (spec.signal?.aborted) return { exitCode: StatusCode, collected: false, aborted: true };
          const copied = await copyOut(container, spec.collect, spec.collectTo, spec.maxCollectBytes);
          return { exitCode: StatusCode, ...copied, aborted: false };
        } finally {
          spec.signal?.removeEventListener('abort', kill);
        }
      } catch (err) {
        throw new AppError('CONTAINER_FAILED', `the build container failed: ${toMessage(err)}`, { cause: err });
      } finally {
        await container.remove({ force: true, v: true }).catch((err: unknown) => log.warn({ err, buildId: spec.buildId }, 'could not remove build container'));
        owned.delete(container.id);
      }
    },
  };
}
