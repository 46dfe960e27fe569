import type { BuildRequest } from '../builds/build-request.js';
import { assertRepoName, isSha, parseRef } from '../builds/refs.js';
import { isAppError } from '../errors.js';

/** What a verified delivery asks for: a build, a ping answer, or nothing (with the reason). */
export type WebhookOutcome =
  | { kind: 'build'; request: BuildRequest }
  | { kind: 'ping'; zen: string | null }
  | { kind: 'ignored'; reason: string };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const str = (value: unknown): string | null => (typeof value === 'string' ? value : null);

/**
 * Maps a verified, parsed delivery onto a build request. Pure: no I/O.
 * Handles `ping` and `push` (of `refs/heads/*` and `refs/tags/*`); a push with
 * `deleted: true`, any other ref, and any other event are ignored with the reason.
 * Payload shapes: https://docs.github.com/webhooks/webhook-events-and-payloads#push
 */
export function toBuildRequest(event: string, payload: unknown, deliveryId: string | null): WebhookOutcome {
  if (!isRecord(payload)) return { kind: 'ignored', reason: 'the payload is not a JSON object' };
  switch (event) {
    case 'ping':
      return { kind: 'ping', zen: str(payload['zen']) };
    case 'push':
      break;
    default:
      return { kind: 'ignored', reason: `event ${JSON.stringify(event.slice(0, 60))} does not trigger builds` };
  }
  const ref = str(payload['ref']);
  if (ref === null) return { kind: 'ignored', reason: 'push without a ref' };
  if (payload['deleted'] === true) return { kind: 'ignored', reason: `${ref} was deleted` };
  try {
    parseRef(ref);
  } catch (err) {
    if (isAppError(err)) return { kind: 'ignored', reason: err.message };
    throw err;
  }
  const sha = str(payload['after']);
  if (sha === null || !isSha(sha) || /^0+$/.test(sha)) return { kind: 'ignored', reason: `push of ${ref} has no commit to build` };
  const repository = payload['repository'];
  if (!isRecord(repository)) return { kind: 'ignored', reason: 'push without a repository' };
  const fullName = str(repository['full_name']) ?? '';
  const [owner = '', name = '', ...rest] = fullName.split('/');
  const cloneUrl = str(repository['clone_url']);
  if (rest.length > 0 || cloneUrl === null) return { kind: 'ignored', reason: 'push without a repository full_name and clone_url' };
  try {
    assertRepoName(owner, 'owner');
    assertRepoName(name, 'repository name');
  } catch (err) {
    if (isAppError(err)) return { kind: 'ignored', reason: err.message };
    throw err;
  }
  const headCommit = payload['head_commit'];
  const treeId = isRecord(headCommit) && headCommit['id'] === sha ? str(headCommit['tree_id']) : null;
  return {
    kind: 'build',
    request: {
      owner,
      repo: name,
      ref,
      sha,
      tree: treeId !== null && isSha(treeId) ? treeId : null,
      cloneUrl,
      defaultBranch: str(repository['default_branch']),
      deliveryId,
    },
  };
}
