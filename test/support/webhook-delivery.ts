import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { sign } from '@octokit/webhooks-methods';

const require = createRequire(import.meta.url);

interface WebhookExamples {
  name: string;
  examples: Record<string, unknown>[];
}

/** GitHub's own example payloads of `event` from @octokit/webhooks-examples (api.github.com). */
export function examplePayloads(event: string): Record<string, unknown>[] {
  const all = require('@octokit/webhooks-examples/api.github.com/index.json') as WebhookExamples[];
  const found = all.find((e) => e.name === event);
  if (found === undefined) throw new Error(`no example payloads for ${event}`);
  return structuredClone(found.examples);
}

/**
 * GitHub's example push of a branch (refs/heads/master, not deleted) rewritten to `owner/repo`,
 * `ref` and `sha`, with `cloneUrl` as the repository's clone_url and `tree` as
 * `head_commit.tree_id` (left out when not given).
 */
export function pushPayload(input: {
  owner: string;
  repo: string;
  ref: string;
  sha: string;
  tree?: string;
  before?: string;
  cloneUrl?: string;
  defaultBranch?: string;
}): Record<string, unknown> {
  const example = examplePayloads('push').find((p) => p['deleted'] === false && String(p['ref']).startsWith('refs/heads/'));
  if (example === undefined) throw new Error('no branch push among the example payloads');
  const repository = example['repository'] as Record<string, unknown>;
  const owner = repository['owner'] as Record<string, unknown>;
  const fullName = `${input.owner}/${input.repo}`;
  Object.assign(owner, { login: input.owner, name: input.owner });
  Object.assign(repository, {
    name: input.repo,
    full_name: fullName,
    clone_url: input.cloneUrl ?? `https://github.com/${fullName}.git`,
    html_url: `https://github.com/${fullName}`,
    default_branch: input.defaultBranch ?? 'main',
    master_branch: input.defaultBranch ?? 'main',
  });
  const headCommit = (example['head_commit'] ?? null) as Record<string, unknown> | null;
  if (headCommit !== null) {
    headCommit['id'] = input.sha;
    // the example's tree_id belongs to another commit: state the real one, or none
    if (input.tree === undefined) delete headCommit['tree_id'];
    else headCommit['tree_id'] = input.tree;
  }
  return {
    ...example,
    ref: input.ref,
    before: input.before ?? '0000000000000000000000000000000000000000',
    after: input.sha,
    created: false,
    deleted: false,
    repository,
    head_commit: headCommit,
    commits: headCommit === null ? [] : [headCommit],
  };
}

/** `repository` of an example payload rewritten to `owner/repo` with `cloneUrl` and `defaultBranch`. */
function rewriteRepository(
  repository: Record<string, unknown>,
  input: { owner: string; repo: string; cloneUrl?: string; defaultBranch?: string },
): Record<string, unknown> {
  const fullName = `${input.owner}/${input.repo}`;
  Object.assign(repository['owner'] as Record<string, unknown>, { login: input.owner });
  return Object.assign(repository, {
    name: input.repo,
    full_name: fullName,
    clone_url: input.cloneUrl ?? `https://github.com/${fullName}.git`,
    html_url: `https://github.com/${fullName}`,
    default_branch: input.defaultBranch ?? 'main',
  });
}

/** GitHub's example `create` event of a tag, rewritten to `owner/repo` and tag `tag`. */
export function createPayload(input: { owner: string; repo: string; tag: string; cloneUrl?: string; defaultBranch?: string }): Record<string, unknown> {
  const example = examplePayloads('create').find((p) => p['ref_type'] === 'tag');
  if (example === undefined) throw new Error('no tag create among the example payloads');
  return {
    ...example,
    ref: input.tag,
    master_branch: input.defaultBranch ?? 'main',
    repository: rewriteRepository(example['repository'] as Record<string, unknown>, input),
  };
}

/**
 * GitHub's example `pull_request` event of `action` (opened, synchronize, reopened, closed)
 * rewritten to pull request `number` of `owner/repo`, from branch `head` at `sha` onto
 * branch `base`. With `fork`, the head is that repository (`owner/name`); `fork: null` is
 * a fork that was deleted.
 */
export function pullRequestPayload(input: {
  owner: string;
  repo: string;
  action: string;
  number: number;
  head: string;
  sha: string;
  base: string;
  fork?: string | null;
  cloneUrl?: string;
  defaultBranch?: string;
}): Record<string, unknown> {
  const example = examplePayloads('pull_request').find((p) => p['action'] === input.action);
  if (example === undefined) throw new Error(`no pull_request ${input.action} among the example payloads`);
  const repository = rewriteRepository(example['repository'] as Record<string, unknown>, input);
  const pr = example['pull_request'] as Record<string, unknown>;
  const head = pr['head'] as Record<string, unknown>;
  const base = pr['base'] as Record<string, unknown>;
  const [forkOwner = '', forkName = ''] = (input.fork ?? '').split('/');
  const headRepo =
    input.fork === undefined
      ? structuredClone(repository)
      : input.fork === null
        ? null
        : rewriteRepository(structuredClone(repository), { owner: forkOwner, repo: forkName });
  Object.assign(head, { ref: input.head, sha: input.sha, label: `${input.fork?.split('/')[0] ?? input.owner}:${input.head}`, repo: headRepo });
  Object.assign(base, { ref: input.base, label: `${input.owner}:${input.base}`, repo: structuredClone(repository) });
  Object.assign(pr, { number: input.number, state: input.action === 'closed' ? 'closed' : 'open' });
  return { ...example, number: input.number, pull_request: pr, repository };
}

/** What a delivery sent and what the server answered. */
export interface DeliveryResponse {
  status: number;
  body: unknown;
  deliveryId: string;
}

/**
 * POSTs a webhook delivery like GitHub does: JSON body, `X-GitHub-Event`,
 * `X-GitHub-Delivery` and `X-Hub-Signature-256` made with @octokit/webhooks-methods.
 * `headers` override or add headers (e.g. to drop or break the signature).
 */
export async function deliver(
  baseUrl: string,
  input: { event: string; payload: unknown; secret: string; body?: string; deliveryId?: string; headers?: Record<string, string | null> },
): Promise<DeliveryResponse> {
  // The signature is always over the payload; `body` may differ from it (a tampered body).
  const signed = JSON.stringify(input.payload);
  const body = input.body ?? signed;
  const deliveryId = input.deliveryId ?? randomUUID();
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'GitHub-Hookshot/autobuilder-test',
    'x-github-event': input.event,
    'x-github-delivery': deliveryId,
    'x-hub-signature-256': await sign(input.secret, signed),
  };
  for (const [name, value] of Object.entries(input.headers ?? {})) {
    if (value === null) delete headers[name];
    else headers[name] = value;
  }
  const response = await fetch(`${baseUrl}/hooks/github`, { method: 'POST', headers, body });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, body: parsed, deliveryId };
}
