import type { ImageBuildResult, ImageBuildSpec, ListedImage } from './image-build.js';

/** What to run: one build script in one container. */
export interface ContainerSpec {
  buildId: string;
  /** Docker image reference, e.g. `autobuilder/debian-build:bookworm` */
  image: string;
  /** argv of the build process (no shell parses it), e.g. `['/bin/sh', 'autobuild/build.sh']` */
  command: readonly string[];
  /** host directory bind-mounted read-write at `workdir` */
  workspace: string;
  /** absolute directory in the container where the workspace is mounted and the command starts */
  workdir: string;
  /** environment of the build; payload data (refs, names) reaches builds only this way */
  env: Readonly<Record<string, string>>;
  /** absolute path in the container of the file to collect once the command has exited */
  collect: string;
  /** host file to write the collected file to */
  collectTo: string;
  /** most bytes the collected file may have; a bigger one is not copied (see {@link ContainerResult.collectTooLarge}) */
  maxCollectBytes?: number;
  /**
   * Called with the output lines (without their newlines) of each chunk the container
   * printed, in order per stream. A line longer than {@link MAX_OUTPUT_LINE_BYTES} comes in
   * pieces of at most that many bytes, all but its last with `complete: false`; no byte is
   * dropped. The runner reads no more output until the call returns, or the promise it
   * returns resolves (back-pressure on the container: it waits in its own `write`).
   */
  onLines(stream: 'stdout' | 'stderr', lines: readonly OutputLine[]): void | Promise<void>;
  /** this build's limits, already capped by the server's maxima; absent fields use the runner's */
  resources?: { memoryBytes?: number; cpus?: number; pidsLimit?: number };
  /** aborting kills the container (SIGKILL); the run then resolves with `aborted: true` */
  signal?: AbortSignal;
  /** Docker network of this container (e.g. `none` for a fork's build); absent: the runner's configured one */
  network?: string;
  /** more bind mounts besides the workspace (persistent caches, host mounts); each `source` must exist */
  mounts?: readonly BindMount[];
}

/** A host file or directory bound into a build container. */
export interface BindMount {
  /** absolute host path; it must exist (the container is refused otherwise, never an empty directory made) */
  source: string;
  /** absolute path in the container */
  target: string;
  readOnly: boolean;
}

export type { ImageBuildResult, ImageBuildSpec, ListedImage } from './image-build.js';

/** One line of a container's output, or a piece of a long one (see {@link ContainerSpec.onLines}). */
export interface OutputLine {
  text: string;
  /** false when the line goes on in the next piece */
  complete: boolean;
}

/** How a container run ended. */
export interface ContainerResult {
  /** the command's exit code */
  exitCode: number;
  /** true when `collect` existed and was copied to `collectTo` */
  collected: boolean;
  /**
   * Set when `collect` was larger than `maxCollectBytes`: its size in bytes as far as it was
   * read. `collected` is false then and nothing is left at `collectTo`.
   */
  collectTooLarge?: number;
  /** true when `signal` stopped the container (nothing is collected then) */
  aborted: boolean;
}

/**
 * Runs build containers.
 *
 * Lifecycle of {@link ContainerRunner.run}: create the container (labelled
 * `autobuilder.build-id=<buildId>`), attach to its output, start it, stream each output
 * line to `onLines` (bounded pieces, read with back-pressure), wait for the exit, copy `collect` out, remove the container, resolve.
 * An aborted `signal` kills the container at any point of that.
 * The container is removed on every path, including errors. A non-zero exit is a result,
 * not an exception.
 *
 * Hardening (never relaxed by a definition): not privileged, every capability dropped
 * except the configured few, `no-new-privileges`, pids/memory/CPU limits, and never the
 * Docker socket.
 *
 * @throws AppError `CONTAINER_FAILED` when the image or the network is missing or Docker
 *   fails: an `error` of ours, not a `failure` of the build
 */
export interface ContainerRunner {
  run(spec: ContainerSpec): Promise<ContainerResult>;
  /** The image's id (`sha256:…`), or null when the engine does not have it. */
  imageId(image: string): Promise<string | null>;
  /**
   * Builds an image from a Dockerfile and its context (see `buildImage` in image-build.ts): RUN
   * steps on `spec.network`, never the host's, never a registry pull. A failing build is a
   * result naming its step, not an exception. Optional: a runner without it cannot build
   * images from Dockerfiles (such builds end `error`).
   * @throws AppError `CONTAINER_FAILED` when Docker cannot be reached or fails
   */
  buildImage?(spec: ImageBuildSpec): Promise<ImageBuildResult>;
  /** The images of `repository` on the engine (retention of env images); optional as {@link buildImage}. */
  listImages?(repository: string): Promise<ListedImage[]>;
  /** Takes the name `name` off its image, which goes with its last name; false when a container holds it. Optional as {@link buildImage}. */
  removeImage?(name: string): Promise<boolean>;
  /**
   * Removes every container of this server's instance (running or not) that no `run` of
   * this process owns: what a killed process left. Returns their build ids.
   */
  removeOrphans(): Promise<string[]>;
  /**
   * Loads what running a container needs (a Docker client loaded on demand), so that the
   * event loop's one long pause for it comes before a build's log opens, not while lines
   * wait to be sent. Idempotent; resolves at once once done. Optional: a runner that loads
   * nothing lazily has none.
   */
  warmUp?(): Promise<void>;
}

/** Longest piece of an output line handed to {@link ContainerSpec.onLines}, in bytes (64 KiB, what log readers show of a line). */
export const MAX_OUTPUT_LINE_BYTES = 64 * 1024;

/** Label every build container carries, with its build id as value. */
export const BUILD_ID_LABEL = 'autobuilder.build-id';

/**
 * Label naming the server instance a container belongs to (derived from its data
 * directory), so servers sharing one Docker engine never touch each other's containers.
 */
export const INSTANCE_LABEL = 'autobuilder.instance';
