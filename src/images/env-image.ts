import { AppError } from '../errors.js';
import type { BuildEnd } from '../builds/build-lifecycle.js';
import type { BuildLogWriter } from '../builds/build-log-writer.js';
import type { Checkout } from '../builds/checkout.js';
import type { SecretMasker } from '../builds/secret-masker.js';
import { CONFIG_PREFIX, dockerfileInContext, type DockerfileSpec } from '../config-repo/dockerfile-spec.js';
import type { ContainerRunner } from '../runner/container-runner.js';
import type { SerializeByKey } from '../serialize-by-key.js';
import {
  checkContext,
  COMMIT_CONTEXT_LIMITS,
  ENV_HASH_LABEL,
  packContext,
  toEnvImageHash,
  toEnvImageTag,
  type ContextFile,
  type ContextListing,
} from './build-context.js';
import { baseImagesOf, toForkDockerfile } from './dockerfile-bases.js';

/** A context file carried with a plan: its content base64 (JSON-safe, so a worker's job can hold it). */
export interface CarriedFile extends ContextFile {
  data: string;
}

/**
 * What a build whose definition names a Dockerfile needs to have its image: decided with
 * the build's cache key ({@link planEnvImage}), made or found when it runs
 * ({@link prepareEnvImage}), here or on a worker (a job carries it).
 */
export interface EnvImagePlan {
  /** `autobuilder/env:<hash>` */
  tag: string;
  /** the content hash (see `toEnvImageHash`) */
  hash: string;
  /** the Dockerfile as the definition names it, for logs and descriptions: `ci/Dockerfile`, `config:envs/go/Dockerfile` */
  name: string;
  source: DockerfileSpec['source'];
  /** the context directory in its repository */
  context: string;
  /** the Dockerfile's path inside the context */
  dockerfile: string;
  buildArgs: Record<string, string>;
  /** built for a pull request from a fork: hashed apart from trusted builds' images */
  fork: boolean;
  /** a context of the config repository: its files and contents; null for one of the built commit (read from the mirror where it runs) */
  files: CarriedFile[] | null;
  /** why the context cannot be built, found while listing it (over its limits, not there); the build ends `failure` with it */
  problem: string | null;
  /**
   * true when the cache key was decided before the image existed (its `image` input is the
   * tag, not an id): once the image is made, the build's `image` input and key are its id's
   */
  rekey: boolean;
}

/** The name of a Dockerfile as its definition writes it. */
export const toDockerfileName = (spec: Pick<DockerfileSpec, 'source' | 'path'>): string =>
  spec.source === 'config' ? `${CONFIG_PREFIX}${spec.path}` : spec.path;

/**
 * The plan of a build's env image from its context's listing: its content hash and tag, and
 * for a context of the config repository its files with their contents.
 * @param contents - the files' contents by path, for a context of the config repository
 */
export function planEnvImage(input: {
  spec: DockerfileSpec;
  listing: ContextListing;
  contents?: ReadonlyMap<string, Buffer>;
  fork: boolean;
  rekey?: boolean;
}): EnvImagePlan {
  const { spec, listing, contents, fork } = input;
  const dockerfile = dockerfileInContext(spec);
  const hash = toEnvImageHash({ dockerfile, files: listing.files, buildArgs: spec.buildArgs, fork, problem: listing.problem });
  return {
    tag: toEnvImageTag(hash),
    hash,
    name: toDockerfileName(spec),
    source: spec.source,
    context: spec.context,
    dockerfile,
    buildArgs: { ...spec.buildArgs },
    fork,
    files: contents === undefined ? null : listing.files.map((f) => ({ ...f, data: (contents.get(f.path) ?? Buffer.alloc(0)).toString('base64') })),
    problem: listing.problem,
    rekey: input.rekey ?? false,
  };
}

/** `bytes` as KiB or MiB for log lines. */
const toSize = (bytes: number): string => (bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 ** 2).toFixed(1)} MiB`);

/** The env image of a build, ready: its tag and id, and whether this build made it. */
export interface ReadyEnvImage {
  ok: true;
  tag: string;
  imageId: string;
  built: boolean;
}

/**
 * Makes sure the env image of `plan` is on this host's engine, building it when its tag is
 * not there: the context is read (from the mirror at `tree` for the built commit, else from
 * the plan), checked (no path out of it, no symbolic link pointing out, the Dockerfile a file
 * in it, within its limits), its base images looked up (none is pulled), then built under a
 * per-tag lock (two builds of one tag build it once) as a section of the build log, between
 * `[autobuilder] image:` lines. A build of a tag already there writes one line and builds
 * nothing. Lines are masked and count against `maxLogBytes`.
 * @returns the image, or the `failure` of the build: a context that cannot be built, a failing
 *   image build (its step named), more output than the log may hold
 * @throws AppError `CONTAINER_FAILED` for a base image not on the engine (naming it and its
 *   line), Docker unreachable, a runner that cannot build images; `GIT_FAILED` from reading the mirror
 */
export async function prepareEnvImage(input: {
  plan: EnvImagePlan;
  runner: Pick<ContainerRunner, 'imageId' | 'buildImage'>;
  checkout: Pick<Checkout, 'listContext' | 'readBlobs'>;
  /** the repository whose mirror holds the commit, and the commit's tree */
  owner: string;
  repo: string;
  tree: string;
  /** Docker network of the RUN steps; absent: the runner's builds network */
  network?: string;
  resources: { memoryBytes: number; cpus: number };
  log: BuildLogWriter;
  mask: SecretMasker;
  maxLogBytes: number;
  serial: SerializeByKey;
  signal: AbortSignal;
}): Promise<ReadyEnvImage | { ok: false; end: BuildEnd }> {
  const { plan, runner, log } = input;
  const fail = (description: string): { ok: false; end: BuildEnd } => {
    log.line(`[autobuilder] image: ${description}`);
    return { ok: false, end: { state: 'failure', description: `image ${plan.name}: ${description}` } };
  };
  if (plan.problem !== null) return fail(plan.problem);
  const found = await runner.imageId(plan.tag);
  if (found !== null) {
    log.line(`[autobuilder] image: ${plan.tag} (${found}) from ${plan.name}, built before`);
    return { ok: true, tag: plan.tag, imageId: found, built: false };
  }
  if (runner.buildImage === undefined) throw new AppError('CONTAINER_FAILED', `this runner cannot build images from Dockerfiles (${plan.name})`);
  const buildImage = runner.buildImage.bind(runner);

  // the context: the plan's own files, or the commit's as the mirror has them
  let files: ContextFile[];
  const contents = new Map<string, Buffer>();
  if (plan.files !== null) {
    files = plan.files.map(({ data: _data, ...file }) => file);
    for (const f of plan.files) contents.set(f.path, Buffer.from(f.data, 'base64'));
  } else {
    const listing = await input.checkout.listContext({
      owner: input.owner,
      repo: input.repo,
      treeish: input.tree,
      dir: plan.context,
      limits: COMMIT_CONTEXT_LIMITS,
    });
    if (listing.problem !== null) return fail(listing.problem);
    const hash = toEnvImageHash({ dockerfile: plan.dockerfile, files: listing.files, buildArgs: plan.buildArgs, fork: plan.fork });
    if (hash !== plan.hash) throw new AppError('GIT_FAILED', `the context ${plan.context} at tree ${input.tree} is not what the build was decided on`);
    files = listing.files;
    const blobs = await input.checkout.readBlobs({ owner: input.owner, repo: input.repo, ids: files.map((f) => f.id) });
    for (const f of files) contents.set(f.path, blobs.get(f.id) ?? Buffer.alloc(0));
  }
  const targets = new Map(files.filter((f) => f.kind === 'symlink').map((f) => [f.path, (contents.get(f.path) ?? Buffer.alloc(0)).toString('utf8')]));
  const problem = checkContext(files, plan.dockerfile, targets);
  if (problem !== null) return fail(problem);

  // no registry is assumed: every base image must be on the engine already
  const text = (contents.get(plan.dockerfile) ?? Buffer.alloc(0)).toString('utf8');
  for (const base of await baseImagesOf(text, plan.buildArgs)) {
    if ((await runner.imageId(base.image)) === null) {
      const at = `${plan.source === 'config' ? CONFIG_PREFIX : ''}${plan.context === '.' ? '' : `${plan.context}/`}${plan.dockerfile}:${base.line}`;
      throw new AppError(
        'CONTAINER_FAILED',
        `base image ${base.image} (FROM at ${at}) is not on this Docker engine: images are not pulled from a registry; load or build it on the host`,
      );
    }
  }

  // a fork's image shares no cached layer with trusted builds' images, either way
  if (plan.fork) contents.set(plan.dockerfile, Buffer.from(await toForkDockerfile(text)));

  return input.serial(plan.tag, async () => {
    // another build of the same tag may have made it while this one waited
    const made = await runner.imageId(plan.tag);
    if (made !== null) {
      log.line(`[autobuilder] image: ${plan.tag} (${made}) from ${plan.name}, built meanwhile by another build`);
      return { ok: true, tag: plan.tag, imageId: made, built: false };
    }
    const bytes = files.reduce((sum, f) => sum + f.size, 0);
    log.line(`[autobuilder] image: building ${plan.tag} from ${plan.name} (context ${plan.context}: ${files.length} files, ${toSize(bytes)})`);
    const started = Date.now();
    const stop = new AbortController();
    // set by onLine: an object, so the checks after the build read what it did
    const output = { cut: false };
    const result = await buildImage({
      tag: plan.tag,
      context: packContext(files, contents),
      dockerfile: plan.dockerfile,
      buildArgs: plan.buildArgs,
      labels: { [ENV_HASH_LABEL]: plan.hash },
      ...(input.network === undefined ? {} : { network: input.network }),
      resources: input.resources,
      signal: AbortSignal.any([input.signal, stop.signal]),
      onLine: (line) => {
        if (output.cut) return;
        const text = input.mask(line);
        if (log.size + Buffer.byteLength(text) + 1 > input.maxLogBytes) {
          output.cut = true;
          stop.abort();
          return;
        }
        log.line(text);
      },
    }).catch((err: unknown) => {
      if (output.cut && !input.signal.aborted) return { ok: false as const, step: null, message: 'cut' };
      throw err;
    });
    if (output.cut) return fail(`the image build printed more than builds.maxLogBytes (${input.maxLogBytes} bytes); it was stopped`);
    if (!result.ok) return fail(`build failed at ${result.step ?? 'its start'}: ${input.mask(result.message)}`);
    log.line(`[autobuilder] image: built ${plan.tag} (${result.imageId}) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return { ok: true, tag: plan.tag, imageId: result.imageId, built: true };
  });
}
