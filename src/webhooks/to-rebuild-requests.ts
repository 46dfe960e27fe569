import type { Build } from '../builds/build.js';
import type { BuildRequest } from '../builds/build-request.js';
import type { BuildStore } from '../store/build-store.js';
import type { RebuildTarget } from './to-build-request.js';

/** Builds of one commit a re-run check suite looks at, at most (newest first). */
const MAX_SUITE_BUILDS = 500;
/** What may be a build id (as build-log.ts's assertBuildId): other external_ids are not looked up. */
const BUILD_ID = /^[a-z0-9-]{1,64}$/;

/**
 * What a re-run asks for once its builds are looked up: forced build requests (one per
 * distinct original request: a commit's builds may come from a branch and a pull request),
 * each naming the builds it repeats; or nothing, with the reason. The first request carries
 * the delivery's id, each further one that id with `.2`, `.3`, … (each request is stored as a
 * delivery of its own in the inbox, so a redelivery still builds nothing twice).
 */
export type RebuildOutcome = { kind: 'rebuild'; requests: { request: BuildRequest; rebuilds: Build[] }[] } | { kind: 'ignored'; reason: string };

const ignored = (reason: string): RebuildOutcome => ({ kind: 'ignored', reason });
const sameRepo = (build: Build, owner: string, repo: string): boolean => build.repo.toLowerCase() === `${owner}/${repo}`.toLowerCase();

/**
 * The forced request that builds `builds` again (all made for the same request): that request
 * as stored, at the commit they built (a tag's create event stored none), limited to their
 * definitions, with no cache hit and no coalescing (`force`), so a re-run of a failure runs.
 */
function toForcedRequest(request: BuildRequest, builds: readonly Build[], deliveryId: string | null): BuildRequest {
  const { tree: _tree, definitions: _definitions, ...rest } = request;
  const first = builds[0] as Build;
  return { ...rest, sha: first.sha, deliveryId, force: true, definitions: [...new Set(builds.map((b) => b.definition))] };
}

/**
 * Looks up what a re-run of check runs asks to build again and makes the forced requests:
 * - `check_run`: the build its `external_id` names, in the payload's repository and (when the
 *   payload states it) at its `head_sha`;
 * - `check_suite`: the newest build of each context at the suite's `head_sha` in the
 *   payload's repository.
 * When `appId` (config `github.app.appId`) is given, check runs and suites of other GitHub Apps
 * are ignored: the App receives those events for every app's checks on its repositories.
 * Without it (no App configured), the `external_id` alone decides: only a build id of ours in
 * the payload's repository is built. Never builds another repository than the payload's.
 * `deliveryId` goes into the requests (their builds are marked with it). Never throws.
 */
export function toRebuildRequests(
  target: RebuildTarget,
  deps: { store: Pick<BuildStore, 'get' | 'getRequest' | 'findBySha'>; appId: number | null; deliveryId: string | null },
): RebuildOutcome {
  const { store, appId, deliveryId } = deps;
  const subject = target.kind === 'check_run' ? 'check run' : 'check suite';
  if (appId !== null && target.appId !== appId) {
    return ignored(`the ${subject} belongs to ${target.appId === null ? 'no GitHub App' : `GitHub App ${target.appId}`}, not to this one (${appId})`);
  }
  switch (target.kind) {
    case 'check_run': {
      const { externalId } = target;
      const build = BUILD_ID.test(externalId) ? store.get(externalId) : null;
      if (build === null || !sameRepo(build, target.owner, target.repo)) {
        return ignored(`check run external_id ${JSON.stringify(externalId)} is no build of ${target.owner}/${target.repo}`);
      }
      if (target.headSha !== null && target.headSha !== build.sha) {
        return ignored(`check run is on commit ${target.headSha}, build ${build.id} built ${build.sha}`);
      }
      const request = store.getRequest(build.id);
      if (request === null) return ignored(`build ${build.id} has no stored request to build again`);
      return { kind: 'rebuild', requests: [{ request: toForcedRequest(request, [build], deliveryId), rebuilds: [build] }] };
    }
    case 'check_suite': {
      const builds = store.findBySha({ repo: `${target.owner}/${target.repo}`, sha: target.headSha, limit: MAX_SUITE_BUILDS });
      // newest first: the first build of each context is its latest
      const latest = new Map<string, Build>();
      for (const build of builds) if (sameRepo(build, target.owner, target.repo) && !latest.has(build.context)) latest.set(build.context, build);
      if (latest.size === 0) return ignored(`no build of ${target.owner}/${target.repo} at ${target.headSha} to build again`);
      // builds made for one request are rebuilt by one request
      const groups = new Map<string, { request: BuildRequest; builds: Build[] }>();
      for (const build of [...latest.values()].reverse()) {
        const request = store.getRequest(build.id);
        if (request === null) continue;
        const { tree: _tree, deliveryId: _deliveryId, force: _force, definitions: _definitions, sha: _sha, ...identity } = request;
        const key = JSON.stringify(identity);
        const group = groups.get(key);
        if (group === undefined) groups.set(key, { request, builds: [build] });
        else group.builds.push(build);
      }
      if (groups.size === 0) return ignored(`the builds of ${target.headSha} have no stored request to build again`);
      return {
        kind: 'rebuild',
        requests: [...groups.values()].map(({ request, builds: group }, i) => ({
          request: toForcedRequest(request, group, deliveryId === null || i === 0 ? deliveryId : `${deliveryId}.${i + 1}`),
          rebuilds: group,
        })),
      };
    }
    default: {
      const unreachable: never = target;
      return unreachable;
    }
  }
}
