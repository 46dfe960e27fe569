import type { Build } from '../builds/build.js';
import { assertBuildId } from '../builds/build-log.js';
import { AppError } from '../errors.js';
import type { BuildStore } from '../store/build-store.js';

/**
 * The build whose id a route was given.
 * @throws AppError `NOT_FOUND` (404) when `id` cannot be a build id or there is no such build
 */
export function findBuild(store: Pick<BuildStore, 'get'>, id: string): Build {
  const build = store.get(assertBuildId(id));
  if (build === null) throw new AppError('NOT_FOUND', `no build ${id}`, { status: 404 });
  return build;
}
