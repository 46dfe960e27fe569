import type { ConfigRepository } from '../config-repo/config-repository.js';
import type { BuildDefinition } from '../config-repo/definition.js';
import { AppError } from '../errors.js';
import type { ContainerRunner } from '../runner/container-runner.js';
import type { Build } from './build.js';
import { toParamsDigest } from './build-params.js';
import type { BuildRequest } from './build-request.js';
import { SCRIPT_NOT_YET_READ, toCacheInputs, toCacheKey, type CacheInputs } from './cache-key.js';
import { toCloneUrl, type Checkout, type CloneUrlRewrite } from './checkout.js';
import { toLineageBranch } from './refs.js';
import { COMMIT_CONTEXT_LIMITS, CONFIG_CONTEXT_LIMITS } from '../images/build-context.js';
import { planEnvImage, toDockerfileName, type EnvImagePlan } from '../images/env-image.js';

/** Reads the cache inputs and key of a build (see cache-key.ts). */
export type CacheKeyReader = (
  build: Pick<Build, 'repo' | 'ref' | 'sha' | 'params' | 'configSha'>,
  definition: BuildDefinition,
  request: BuildRequest,
  signal: AbortSignal,
) => Promise<{ cacheInputs: CacheInputs; cacheKey: string; envImage: EnvImagePlan | null }>;

/**
 * The cache key of a build of `build.repo` from its inputs: results are shared only within a
 * repository; a fork's only within its pull request, like its workspace lineage.
 */
export function toBuildCacheKey(cacheInputs: CacheInputs, build: Pick<Build, 'repo' | 'ref'>, request: Pick<BuildRequest, 'fromFork'>): string {
  return toCacheKey(cacheInputs, { repository: build.repo, scope: request.fromFork === true ? toLineageBranch(build.ref) : undefined });
}

/**
 * Creates the reader of cache keys. A push payload's tree id fixes every file, the build
 * script included: the key is read from it without the network (the script's blob too when
 * the mirror already holds that tree), and the build fetches its commit when it runs and
 * checks the tree. Without a tree id (manual builds, tags) the commit is fetched here. The
 * image is named by its id, not its tag (the runner remembers inspections).
 *
 * An image built from a Dockerfile is named by the content hash of its Dockerfile, context
 * and build arguments (see `planEnvImage`): its context is listed here (from the commit,
 * fetched first, or from the config repository at the build's revision). With `envImageKey`
 * `id` (builds run on this engine) its `image` input is the id of its tag when the engine has
 * it, else the tag until the build makes it (see `EnvImagePlan.rekey`); with `tag` (builds
 * run on workers, each building on its own engine) it is the tag, which names the content.
 * @throws AppError `CONTAINER_FAILED` when the image is not on the Docker engine; `GIT_FAILED` from the fetch
 */
export function createCacheKeyReader(deps: {
  checkout: Checkout;
  runner: Pick<ContainerRunner, 'imageId'>;
  defaultImage: string;
  cloneUrlRewrites: readonly CloneUrlRewrite[];
  /** reads contexts of `dockerfile: config:…`; without it such builds cannot be decided */
  readConfigContext?: ConfigRepository['readContext'];
  /** how an env image is keyed: by its id on this engine (default), or by its tag */
  envImageKey?: 'id' | 'tag';
}): CacheKeyReader {
  const { checkout } = deps;

  async function treeOf(build: Pick<Build, 'sha'>, definition: BuildDefinition, request: BuildRequest, signal: AbortSignal) {
    const paths = [definition.script];
    // a Dockerfile of the commit is hashed from its context: the commit must be in the mirror
    if (request.tree !== undefined && request.tree !== null && request.tree !== '' && definition.dockerfile?.source !== 'commit') {
      const known = await checkout.inspectTree({ owner: request.owner, repo: request.repo, tree: request.tree, paths });
      return { tree: request.tree, scriptBlob: known === null ? SCRIPT_NOT_YET_READ : (known[0] ?? null) };
    }
    const cloneUrl = toCloneUrl(request.cloneUrl, deps.cloneUrlRewrites);
    const fetched = await checkout.fetch({ owner: request.owner, repo: request.repo, cloneUrl, sha: build.sha, paths, signal });
    return { tree: fetched.tree, scriptBlob: fetched.blobs[0] ?? null };
  }

  /** The plan of a build's env image, with the `image` cache input it gives. */
  async function envImageOf(
    build: Pick<Build, 'configSha'>,
    spec: NonNullable<BuildDefinition['dockerfile']>,
    request: BuildRequest,
    tree: string,
  ): Promise<{ plan: EnvImagePlan; imageId: string }> {
    const fork = request.fromFork === true;
    let plan: EnvImagePlan;
    if (spec.source === 'commit') {
      const listing = await checkout.listContext({ owner: request.owner, repo: request.repo, treeish: tree, dir: spec.context, limits: COMMIT_CONTEXT_LIMITS });
      plan = planEnvImage({ spec, listing, fork });
    } else {
      if (deps.readConfigContext === undefined) throw new AppError('INTERNAL', `no config repository to read ${toDockerfileName(spec)} from`);
      const read = await deps.readConfigContext({ sha: build.configSha, dir: spec.context, limits: CONFIG_CONTEXT_LIMITS });
      plan = planEnvImage({ spec, listing: read, contents: read.contents, fork });
    }
    const id = (deps.envImageKey ?? 'id') === 'id' ? await deps.runner.imageId(plan.tag) : null;
    return { plan: { ...plan, rekey: (deps.envImageKey ?? 'id') === 'id' && id === null }, imageId: id ?? plan.tag };
  }

  return async (build, definition, request, signal) => {
    const spec = definition.dockerfile;
    const image = spec === null ? (definition.baseimage ?? deps.defaultImage) : `dockerfile ${toDockerfileName(spec)}`;
    const [inputs, baseId] = await Promise.all([treeOf(build, definition, request, signal), spec === null ? deps.runner.imageId(image) : null]);
    if (spec === null && baseId === null) {
      throw new AppError('CONTAINER_FAILED', `image ${image} is not on this Docker engine (build or import it; scripts/host-setup.sh makes the default ones)`);
    }
    const env = spec === null ? null : await envImageOf(build, spec, request, inputs.tree);
    const imageId = env?.imageId ?? (baseId as string);
    const cacheInputs = toCacheInputs({
      tree: inputs.tree,
      definition: {
        script: definition.script,
        archives: definition.archives,
        artifact: definition.artifact,
        image,
        incremental: definition.incremental,
        // builds for other worker labels (another CPU, say) are other builds; none: keys as before
        ...(definition.runsOn.length > 0 ? { runsOn: definition.runsOn } : {}),
      },
      imageId,
      scriptBlob: inputs.scriptBlob,
      env: definition.env,
      params: toParamsDigest(build.params ?? {}),
    });
    return { cacheInputs, cacheKey: toBuildCacheKey(cacheInputs, build, request), envImage: env?.plan ?? null };
  };
}
