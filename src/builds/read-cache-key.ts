import type { BuildDefinition } from '../config-repo/definition.js';
import { AppError } from '../errors.js';
import type { ContainerRunner } from '../runner/container-runner.js';
import type { Build } from './build.js';
import { toParamsDigest } from './build-params.js';
import type { BuildRequest } from './build-request.js';
import { SCRIPT_NOT_YET_READ, toCacheInputs, toCacheKey, type CacheInputs } from './cache-key.js';
import { toCloneUrl, type Checkout, type CloneUrlRewrite } from './checkout.js';
import { toLineageBranch } from './refs.js';

/** Reads the cache inputs and key of a build (see cache-key.ts). */
export type CacheKeyReader = (
  build: Pick<Build, 'repo' | 'ref' | 'sha' | 'params'>,
  definition: BuildDefinition,
  request: BuildRequest,
  signal: AbortSignal,
) => Promise<{ cacheInputs: CacheInputs; cacheKey: string }>;

/**
 * Creates the reader of cache keys. A push payload's tree id fixes every file, the build
 * script included: the key is read from it without the network (the script's blob too when
 * the mirror already holds that tree), and the build fetches its commit when it runs and
 * checks the tree. Without a tree id (manual builds, tags) the commit is fetched here. The
 * image is named by its id, not its tag (the runner remembers inspections).
 * @throws AppError `CONTAINER_FAILED` when the image is not on the Docker engine; `GIT_FAILED` from the fetch
 */
export function createCacheKeyReader(deps: {
  checkout: Checkout;
  runner: Pick<ContainerRunner, 'imageId'>;
  defaultImage: string;
  cloneUrlRewrites: readonly CloneUrlRewrite[];
}): CacheKeyReader {
  const { checkout } = deps;

  async function treeOf(build: Pick<Build, 'sha'>, definition: BuildDefinition, request: BuildRequest, signal: AbortSignal) {
    const paths = [definition.script];
    if (request.tree !== undefined && request.tree !== null && request.tree !== '') {
      const known = await checkout.inspectTree({ owner: request.owner, repo: request.repo, tree: request.tree, paths });
      return { tree: request.tree, scriptBlob: known === null ? SCRIPT_NOT_YET_READ : (known[0] ?? null) };
    }
    const cloneUrl = toCloneUrl(request.cloneUrl, deps.cloneUrlRewrites);
    const fetched = await checkout.fetch({ owner: request.owner, repo: request.repo, cloneUrl, sha: build.sha, paths, signal });
    return { tree: fetched.tree, scriptBlob: fetched.blobs[0] ?? null };
  }

  return async (build, definition, request, signal) => {
    const image = definition.baseimage ?? deps.defaultImage;
    const [inputs, imageId] = await Promise.all([treeOf(build, definition, request, signal), deps.runner.imageId(image)]);
    if (imageId === null) {
      throw new AppError('CONTAINER_FAILED', `image ${image} is not on this Docker engine (build or import it; scripts/host-setup.sh makes the default ones)`);
    }
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
    // results are shared only within a repository; a fork's only within its pull request, like its workspace lineage
    const cacheKey = toCacheKey(cacheInputs, { repository: build.repo, scope: request.fromFork === true ? toLineageBranch(build.ref) : undefined });
    return { cacheInputs, cacheKey };
  };
}
