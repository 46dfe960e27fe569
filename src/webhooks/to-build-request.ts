import type { BuildRequest, PullRequestTarget } from '../builds/build-request.js';
import { assertRepoName, isSha, parseRef, toPullRequestRef } from '../builds/refs.js';
import { isAppError } from '../errors.js';

/**
 * What a verified delivery asks for: a build, the cancelling of a closed pull request's
 * waiting builds, a ping answer, or nothing (with the reason).
 */
export type WebhookOutcome =
  | { kind: 'build'; request: BuildRequest }
  | { kind: 'cancel'; target: PullRequestTarget; reason: string }
  | { kind: 'ping'; zen: string | null }
  | { kind: 'rebuild'; target: RebuildTarget }
  | { kind: 'installation'; change: InstallationChange }
  | { kind: 'ignored'; reason: string; deletedRef?: { owner: string; repo: string; ref: string } };

type Ignored = Extract<WebhookOutcome, { kind: 'ignored' }>;

/**
 * What a re-run on GitHub asks to build again, before the builds are looked up (see
 * to-rebuild-requests.ts): one check run's build (`check_run`, its `external_id`), or the
 * builds of a commit (`check_suite`). `appId` is the id of the GitHub App the check run or
 * suite belongs to (null when the payload names none); `trigger` what was clicked.
 */
export type RebuildTarget = { owner: string; repo: string; appId: number | null; trigger: 'rerequested' | 'rebuild-no-cache' } & (
  { kind: 'check_run'; checkRunId: number | null; externalId: string; headSha: string | null } | { kind: 'check_suite'; headSha: string }
);

/** The identifier of the check run action button that rebuilds without the cache (see README, Check runs). */
export const REBUILD_NO_CACHE_ACTION = 'rebuild-no-cache';

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const str = (value: unknown): string | null => (typeof value === 'string' ? value : null);
/** A payload value quoted for a reason: JSON, cut short, so a hostile value stays one short line. */
const quote = (value: string): string => JSON.stringify(value.slice(0, 100));
const ignored = (reason: string): Ignored => ({ kind: 'ignored', reason });

/** Pull request actions that build the head: https://docs.github.com/webhooks/webhook-events-and-payloads#pull_request */
const PULL_REQUEST_BUILD_ACTIONS: ReadonlySet<string> = new Set(['opened', 'synchronize', 'reopened']);

/** The largest pull request number a `refs/pull/<n>/head` ref may carry (see parseBuildRef). */
const MAX_PULL_REQUEST = 9_999_999_999;

/** The repository a payload is about, with its owner and name checked, or why it cannot be built. */
function toRepository(
  payload: Record<string, unknown>,
  event: string,
): { owner: string; repo: string; cloneUrl: string; defaultBranch: string | null } | Ignored {
  const repository = payload['repository'];
  if (!isRecord(repository)) return ignored(`${event} without a repository`);
  const fullName = str(repository['full_name']) ?? '';
  const [owner = '', repo = '', ...rest] = fullName.split('/');
  const cloneUrl = str(repository['clone_url']);
  if (rest.length > 0 || cloneUrl === null) return ignored(`${event} without a repository full_name and clone_url`);
  try {
    assertRepoName(owner, 'owner');
    assertRepoName(repo, 'repository name');
  } catch (err) {
    if (isAppError(err)) return ignored(err.message);
    throw err;
  }
  return { owner, repo, cloneUrl, defaultBranch: str(repository['default_branch']) };
}

/** Null when `ref` is a branch or tag ref git accepts, else the reason it is not. */
function refProblem(ref: string): Ignored | null {
  try {
    parseRef(ref);
    return null;
  } catch (err) {
    if (isAppError(err)) return ignored(err.message);
    throw err;
  }
}

/**
 * `push` of `refs/heads/*` or `refs/tags/*`. A tag push builds the commit the tag points at:
 * for an annotated tag `after` is the tag object and `head_commit` the commit
 * (https://github.blog/changelog/2021-10-01-the-push-webhook-payload-provides-a-consistent-head_commit-on-tag-creation/).
 */
function fromPush(payload: Record<string, unknown>, deliveryId: string | null): WebhookOutcome {
  const ref = str(payload['ref']);
  if (ref === null) return ignored('push without a ref');
  if (payload['deleted'] === true) {
    // nothing to build; retention drops the ref's lineage heads once it has been gone a while
    const repository = refProblem(ref) === null ? toRepository(payload, 'push') : null;
    if (repository === null || 'kind' in repository) return ignored(`${ref} was deleted`);
    return { ...ignored(`${ref} was deleted`), deletedRef: { owner: repository.owner, repo: repository.repo, ref } };
  }
  const problem = refProblem(ref);
  if (problem !== null) return problem;
  const after = str(payload['after']);
  if (after === null || !isSha(after) || /^0+$/.test(after)) return ignored(`push of ${ref} has no commit to build`);
  const headCommit = isRecord(payload['head_commit']) ? payload['head_commit'] : null;
  const headId = str(headCommit?.['id']);
  const sha = ref.startsWith('refs/tags/') && headId !== null && isSha(headId) ? headId : after;
  const repository = toRepository(payload, 'push');
  if ('kind' in repository) return repository;
  const treeId = headId === sha ? str(headCommit?.['tree_id']) : null;
  return {
    kind: 'build',
    request: { ...repository, ref, sha, tree: treeId !== null && isSha(treeId) ? treeId : null, deliveryId },
  };
}

/**
 * `create` of a tag: a build of `refs/tags/<name>` whose sha is resolved later (the payload
 * has none). A created branch is ignored: the push event that comes with it builds it.
 */
function fromCreate(payload: Record<string, unknown>, deliveryId: string | null): WebhookOutcome {
  const name = str(payload['ref']);
  const refType = str(payload['ref_type']);
  if (name === null || refType === null) return ignored('create without a ref and ref_type');
  if (refType === 'branch') return ignored(`branch ${quote(name)} was created: the push event of it builds it`);
  if (refType !== 'tag') return ignored(`create of a ${quote(refType)} does not trigger builds`);
  const ref = `refs/tags/${name}`;
  const problem = refProblem(ref);
  if (problem !== null) return problem;
  const repository = toRepository(payload, 'create');
  if ('kind' in repository) return repository;
  return { kind: 'build', request: { ...repository, ref, sha: null, tree: null, deliveryId } };
}

/**
 * `pull_request`: opened, synchronize and reopened build the head commit as
 * `refs/pull/<n>/head` of the base repository, with the base branch's definitions; closed
 * cancels the pull request's waiting builds. The commit is fetched from the base
 * repository, where GitHub keeps every pull request's head (a deleted fork's too).
 */
function fromPullRequest(payload: Record<string, unknown>, deliveryId: string | null): WebhookOutcome {
  const action = str(payload['action']) ?? '';
  const number = payload['number'];
  if (typeof number !== 'number' || !Number.isSafeInteger(number) || number < 1 || number > MAX_PULL_REQUEST) {
    return ignored('pull_request without a number');
  }
  const repository = toRepository(payload, 'pull_request');
  if ('kind' in repository) return repository;
  if (action === 'closed') {
    return { kind: 'cancel', target: { owner: repository.owner, repo: repository.repo, pullRequest: number }, reason: `pull request #${number} was closed` };
  }
  if (!PULL_REQUEST_BUILD_ACTIONS.has(action)) return ignored(`pull_request action ${quote(action)} does not trigger builds`);
  const pullRequest = isRecord(payload['pull_request']) ? payload['pull_request'] : {};
  const head = isRecord(pullRequest['head']) ? pullRequest['head'] : {};
  const base = isRecord(pullRequest['base']) ? pullRequest['base'] : {};
  const sha = str(head['sha']);
  if (sha === null || !isSha(sha)) return ignored(`pull request #${number} has no head commit to build`);
  const baseBranch = str(base['ref']);
  if (baseBranch === null) return ignored(`pull request #${number} has no base branch`);
  const definitionsRef = `refs/heads/${baseBranch}`;
  const problem = refProblem(definitionsRef);
  if (problem !== null) return problem;
  const headRepo = head['repo'];
  // a head repository other than this one is a fork; none at all is a fork that was deleted
  const fromFork = !isRecord(headRepo) || str(headRepo['full_name']) !== `${repository.owner}/${repository.repo}`;
  return {
    kind: 'build',
    request: { ...repository, ref: toPullRequestRef(number), sha, tree: null, deliveryId, definitionsRef, pullRequest: number, fromFork },
  };
}

const appIdOf = (holder: Record<string, unknown>): number | null => {
  const app = holder['app'];
  const id = isRecord(app) ? app['id'] : null;
  return typeof id === 'number' && Number.isSafeInteger(id) ? id : null;
};

/**
 * `check_run`: `rerequested` (the run's "Re-run" button) and `requested_action` with the
 * {@link REBUILD_NO_CACHE_ACTION} button rebuild the build its `external_id` names; other
 * actions and buttons are ignored. https://docs.github.com/webhooks/webhook-events-and-payloads#check_run
 */
function fromCheckRun(payload: Record<string, unknown>): WebhookOutcome {
  const action = str(payload['action']) ?? '';
  let trigger: RebuildTarget['trigger'];
  if (action === 'rerequested') trigger = 'rerequested';
  else if (action === 'requested_action') {
    const requested = isRecord(payload['requested_action']) ? payload['requested_action'] : {};
    const identifier = str(requested['identifier']) ?? '';
    if (identifier !== REBUILD_NO_CACHE_ACTION) return ignored(`check run action ${quote(identifier)} is not one of autobuilder's`);
    trigger = 'rebuild-no-cache';
  } else return ignored(`check_run action ${quote(action)} does not trigger builds`);
  const checkRun = payload['check_run'];
  if (!isRecord(checkRun)) return ignored('check_run without a check_run');
  const repository = toRepository(payload, 'check_run');
  if ('kind' in repository) return repository;
  const id = checkRun['id'];
  const headSha = str(checkRun['head_sha']);
  return {
    kind: 'rebuild',
    target: {
      kind: 'check_run',
      owner: repository.owner,
      repo: repository.repo,
      appId: appIdOf(checkRun),
      trigger,
      checkRunId: typeof id === 'number' && Number.isSafeInteger(id) ? id : null,
      // bounded: it is quoted in reasons and logs
      externalId: (str(checkRun['external_id']) ?? '').slice(0, 100),
      headSha: headSha !== null && isSha(headSha) ? headSha : null,
    },
  };
}

/**
 * `check_suite`: `rerequested` (the suite's "Re-run all checks") rebuilds the builds of its
 * `head_sha`; `requested` and `completed` are ignored (a push or pull request event builds).
 * https://docs.github.com/webhooks/webhook-events-and-payloads#check_suite
 */
function fromCheckSuite(payload: Record<string, unknown>): WebhookOutcome {
  const action = str(payload['action']) ?? '';
  if (action !== 'rerequested') return ignored(`check_suite action ${quote(action)} does not trigger builds`);
  const checkSuite = payload['check_suite'];
  if (!isRecord(checkSuite)) return ignored('check_suite without a check_suite');
  const headSha = str(checkSuite['head_sha']);
  if (headSha === null || !isSha(headSha)) return ignored('check_suite without a head_sha');
  const repository = toRepository(payload, 'check_suite');
  if ('kind' in repository) return repository;
  return {
    kind: 'rebuild',
    target: { kind: 'check_suite', owner: repository.owner, repo: repository.repo, appId: appIdOf(checkSuite), trigger: 'rerequested', headSha },
  };
}

/**
 * What an `installation` or `installation_repositories` delivery says changed about the GitHub
 * App's installation `installationId` of `account`: the repositories it now reaches
 * (`added`) and no longer reaches (`removed`), `owner/name` each (at most 1,000 of either).
 */
export interface InstallationChange {
  /** the event's action: `created`, `deleted`, `suspend`, `unsuspend`, `new_permissions_accepted`, `added`, `removed` */
  action: string;
  installationId: number | null;
  /** the login of the account the App is installed on */
  account: string | null;
  added: string[];
  removed: string[];
}

/** Installation actions after which the App no longer reaches the listed repositories. */
const INSTALLATION_GONE: ReadonlySet<string> = new Set(['deleted', 'suspend']);

/**
 * `installation` (https://docs.github.com/webhooks/webhook-events-and-payloads#installation) and
 * `installation_repositories` (…#installation_repositories): which repositories the App's
 * installation gained or lost. Nothing is built; the App's cache of installations is dropped.
 */
function fromInstallation(event: string, payload: Record<string, unknown>): WebhookOutcome {
  const installation = isRecord(payload['installation']) ? payload['installation'] : {};
  const account = isRecord(installation['account']) ? str(installation['account']['login']) : null;
  const id = installation['id'];
  const names = (value: unknown): string[] =>
    (Array.isArray(value) ? value : [])
      .slice(0, 1000)
      .map((r) => (isRecord(r) ? str(r['full_name']) : null))
      .filter((n): n is string => n !== null && /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/.test(n));
  const action = (str(payload['action']) ?? '').slice(0, 60);
  const listed = names(payload['repositories']);
  const gone = event === 'installation' && INSTALLATION_GONE.has(action);
  return {
    kind: 'installation',
    change: {
      action,
      installationId: typeof id === 'number' && Number.isSafeInteger(id) && id > 0 ? id : null,
      account,
      added: event === 'installation' ? (gone ? [] : listed) : names(payload['repositories_added']),
      removed: event === 'installation' ? (gone ? listed : []) : names(payload['repositories_removed']),
    },
  };
}

/**
 * Maps a verified, parsed delivery onto what it asks for. Pure: no I/O, never throws.
 * Handles `ping`; `push` of `refs/heads/*` and `refs/tags/*` (a deleted ref is ignored, naming it in `deletedRef`);
 * `create` of a tag; `pull_request` opened, synchronize, reopened (build) and closed
 * (cancel); `check_run` rerequested or its rebuild-without-cache button and `check_suite`
 * rerequested (rebuild); `installation` and `installation_repositories` (what the App reaches
 * now). `delete`, every other event, action or ref is ignored with the reason.
 * Payload shapes: https://docs.github.com/webhooks/webhook-events-and-payloads
 */
export function toBuildRequest(event: string, payload: unknown, deliveryId: string | null): WebhookOutcome {
  if (!isRecord(payload)) return ignored('the payload is not a JSON object');
  switch (event) {
    case 'ping':
      return { kind: 'ping', zen: str(payload['zen']) };
    case 'push':
      return fromPush(payload, deliveryId);
    case 'create':
      return fromCreate(payload, deliveryId);
    case 'pull_request':
      return fromPullRequest(payload, deliveryId);
    case 'check_run':
      return fromCheckRun(payload);
    case 'check_suite':
      return fromCheckSuite(payload);
    case 'installation':
    case 'installation_repositories':
      return fromInstallation(event, payload);
    case 'delete':
      // queued builds of a deleted ref still run: their commits are fetched by sha
      return ignored(`deleting ${str(payload['ref_type']) ?? 'a ref'} ${quote(str(payload['ref']) ?? '')} builds nothing`);
    default:
      return ignored(`event ${quote(event.slice(0, 60))} does not trigger builds`);
  }
}
