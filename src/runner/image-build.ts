import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { AppError, toMessage } from '../errors.js';
import { isEngineName, type DockerEngine } from './docker-engine.js';

/** What to build: one image from a context tar, tagged, with the builds' network for its RUN steps. */
export interface ImageBuildSpec {
  /** the tag the image gets, e.g. `autobuilder/env:<sha256>` */
  tag: string;
  /** a tar stream of the build context */
  context: Readable;
  /** the Dockerfile's path inside the context */
  dockerfile: string;
  buildArgs: Readonly<Record<string, string>>;
  /** labels of the image */
  labels: Readonly<Record<string, string>>;
  /** Docker network of the RUN steps (`none` for a fork's build); absent: the runner's builds network; never the host's */
  network?: string;
  /** limits of each RUN step's container */
  resources: { memoryBytes: number; cpus: number };
  /** each line the build prints (its `stream` output, without the newline) */
  onLine(text: string): void;
  /** aborting stops the build (the engine stops when the client goes away); it then rejects */
  signal?: AbortSignal;
}

/** How an image build ended: its image id, or the step it failed at (`Step 2/4 : RUN make`, null before any) and Docker's message. */
export type ImageBuildResult = { ok: true; imageId: string } | { ok: false; step: string | null; message: string };

/** Longest line of image build output kept, in characters; the rest of a longer one is cut. */
const MAX_LINE = 64 * 1024;

/** One object of the build API's JSON stream (only the fields read). */
interface BuildMessage {
  stream?: unknown;
  error?: unknown;
  errorDetail?: { message?: unknown };
  aux?: { ID?: unknown };
}

/**
 * Builds an image with the engine's classic builder (`POST /build`, through dockerode's
 * `buildImage`): no registry pull is asked for (`pull` unset; a base image must be on the
 * engine, which the caller checks first), intermediate containers removed even on failure,
 * RUN steps on `spec.network` with the given memory and CPU limits. The JSON stream is read
 * as it comes: `stream` text becomes lines for `onLine`, `error`/`errorDetail` ends the build
 * as a failure at the last step seen, `aux.ID` is the image id.
 * @throws AppError `CONTAINER_FAILED` when Docker cannot be reached or answers the request with an error
 */
export async function buildImage(docker: Docker, spec: ImageBuildSpec): Promise<ImageBuildResult> {
  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.buildImage(spec.context, {
      t: spec.tag,
      dockerfile: spec.dockerfile,
      buildargs: { ...spec.buildArgs },
      labels: { ...spec.labels },
      // the host's network is never an image build's: it would reach what builds are kept from
      networkmode: spec.network === undefined || spec.network === 'host' ? 'none' : spec.network,
      rm: true,
      forcerm: true,
      memory: spec.resources.memoryBytes,
      memswap: spec.resources.memoryBytes,
      cpuperiod: 100_000,
      cpuquota: Math.max(1000, Math.round(spec.resources.cpus * 100_000)),
      version: '1',
      ...(spec.signal === undefined ? {} : { abortSignal: spec.signal }),
    });
  } catch (err) {
    if (spec.signal?.aborted) throw err;
    throw new AppError('CONTAINER_FAILED', `cannot build the image ${spec.tag}: ${toMessage(err)}`, { cause: err });
  }
  // set by the stream's handlers: an object, so the checks after the stream read what they did
  const seen: { step: string | null; failure: string | null; imageId: string | null } = { step: null, failure: null, imageId: null };
  let pending = '';
  const emit = (text: string) => {
    pending += text;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const raw of lines) {
      // progress lines rewrite themselves with carriage returns: the last state is the line
      const line = (
        raw
          .split('\r')
          .filter((p) => p !== '')
          .at(-1) ?? ''
      ).slice(0, MAX_LINE);
      if (/^Step \d+\/\d+ : /.test(line)) seen.step = line.slice(0, 300);
      spec.onLine(line);
    }
    if (pending.length > MAX_LINE) {
      spec.onLine(pending.slice(0, MAX_LINE));
      pending = '';
    }
  };
  let buffer = '';
  const handle = (text: string) => {
    if (text.trim() === '') return;
    let message: BuildMessage;
    try {
      message = JSON.parse(text) as BuildMessage;
    } catch {
      return;
    }
    if (typeof message.stream === 'string') emit(message.stream);
    if (typeof message.aux?.ID === 'string') seen.imageId = message.aux.ID;
    if (message.error !== undefined || message.errorDetail !== undefined) {
      const detail = message.errorDetail?.message;
      seen.failure = (typeof detail === 'string' ? detail : typeof message.error === 'string' ? message.error : 'the image build failed').slice(0, 2000);
    }
  };
  try {
    for await (const chunk of stream as AsyncIterable<Buffer | string>) {
      buffer += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
      const parts = buffer.split(/\r?\n/);
      buffer = parts.pop() ?? '';
      for (const part of parts) handle(part);
      // a hostile build printing one endless line is cut, not held
      if (buffer.length > 4 * MAX_LINE) buffer = '';
    }
    handle(buffer);
  } catch (err) {
    if (spec.signal?.aborted) throw err;
    throw new AppError('CONTAINER_FAILED', `the image build of ${spec.tag} was cut off: ${toMessage(err)}`, { cause: err });
  }
  if (pending !== '') emit('\n');
  if (seen.failure !== null) return { ok: false, step: seen.step, message: seen.failure };
  if (seen.imageId === null) return { ok: false, step: seen.step, message: 'the engine reported no image id' };
  return { ok: true, imageId: seen.imageId };
}

/** An image of one repository as the engine lists it. */
export interface ListedImage {
  id: string;
  tags: string[];
  /** when it was made, ms since the epoch */
  createdMs: number;
}

/**
 * The images of `repository` (e.g. `autobuilder/env`) on the engine (`GET /images/json`).
 * @throws AppError `CONTAINER_FAILED` when the engine cannot be reached or fails
 */
export async function listImages(engine: DockerEngine, repository: string): Promise<ListedImage[]> {
  const answer = await engine.call('GET', '/images/json', { filters: { reference: [repository] } }).catch((err: unknown) => {
    throw new AppError('CONTAINER_FAILED', `cannot reach Docker: ${toMessage(err)}`, { cause: err });
  });
  if (answer.status !== 200 || !Array.isArray(answer.body)) throw new AppError('CONTAINER_FAILED', `listing images answered HTTP ${answer.status}`);
  return (answer.body as { Id?: unknown; RepoTags?: unknown; Created?: unknown }[]).flatMap((image) =>
    typeof image.Id === 'string'
      ? [
          {
            id: image.Id,
            tags: Array.isArray(image.RepoTags) ? image.RepoTags.filter((t): t is string => typeof t === 'string') : [],
            createdMs: typeof image.Created === 'number' ? image.Created * 1000 : 0,
          },
        ]
      : [],
  );
}

/**
 * Removes the image name `name` (`DELETE /images/{name}`, not forced): a tag is taken off, and
 * the image goes with its last tag; an image a container uses stays.
 * @returns false when the engine keeps it (in use: HTTP 409), true when it is gone (or was)
 * @throws AppError `CONTAINER_FAILED` when the engine cannot be reached or fails otherwise
 */
export async function removeImage(engine: DockerEngine, name: string): Promise<boolean> {
  if (!isEngineName(name)) throw new AppError('UNSAFE_INPUT', `not an image name: ${JSON.stringify(name.slice(0, 80))}`);
  const answer = await engine.call('DELETE', `/images/${name}`).catch((err: unknown) => {
    throw new AppError('CONTAINER_FAILED', `cannot reach Docker: ${toMessage(err)}`, { cause: err });
  });
  if (answer.status === 200 || answer.status === 404) return true;
  if (answer.status === 409) return false;
  throw new AppError('CONTAINER_FAILED', `removing image ${name} answered HTTP ${answer.status}`);
}
