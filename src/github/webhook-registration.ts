import type { Octokit } from '@octokit/rest';
import { assertRepoName } from '../builds/refs.js';
import { toMessage } from '../errors.js';
import type { Logger } from '../logger.js';

/**
 * The events the server's webhook subscribes to: pushes (branches and tags), ref creation
 * and deletion, and pull requests. `ping` needs no subscription: GitHub sends it to every new
 * hook (https://docs.github.com/webhooks/webhook-events-and-payloads#ping).
 */
export const WEBHOOK_EVENTS: readonly string[] = Object.freeze(['push', 'create', 'delete', 'pull_request']);

/** What registration did for one repository. */
export type RegistrationOutcome = 'created' | 'updated' | 'unchanged' | 'failed';

/** The part of a hook's settings that {@link ensureWebhooks} compares and, when it differs, rewrites. */
export type WebhookSetting = 'url' | 'events' | 'content_type' | 'insecure_ssl' | 'active' | 'secret';

/**
 * The result of registration for one `owner/repo`. `hookId` is GitHub's id of the hook;
 * `changed` names what an update rewrote; a failure carries the HTTP status GitHub answered
 * (null when there was no answer: a network error, a name that is not `owner/repo`, a
 * stopped run) and a reason meant for operators (it never contains the secret).
 */
export type RegistrationReport =
  | { repository: string; outcome: 'created'; hookId: number }
  | { repository: string; outcome: 'updated'; hookId: number; changed: WebhookSetting[] }
  | { repository: string; outcome: 'unchanged'; hookId: number }
  | { repository: string; outcome: 'failed'; status: number | null; reason: string };

/** What {@link ensureWebhooks} needs. */
export interface EnsureWebhooksOptions {
  /** an authenticated client (see `createOctokit`); its token needs admin:repo_hook, or "Webhooks: write" */
  octokit: Octokit;
  /** `owner/repo` names; duplicates are done once, reports keep the first-seen order */
  repositories: readonly string[];
  /** absolute URL GitHub delivers to: `<publicUrl>/hooks/github` */
  hookUrl: string;
  /** the webhook secret GitHub signs deliveries with; sent on every create and update, never logged */
  secret: string;
  /** events to subscribe to; default {@link WEBHOOK_EVENTS} */
  events?: readonly string[];
  log: Logger;
  /** stops the run: repositories not yet done are reported `failed` */
  signal?: AbortSignal;
}

/** A hook as `GET /repos/{owner}/{repo}/hooks` lists it (only the fields read here). */
interface ListedHook {
  id: number;
  name: string;
  active: boolean;
  events: string[];
  config: { url?: string | undefined; content_type?: string | undefined; secret?: string | undefined; insecure_ssl?: string | number | undefined };
}

const withoutTrailingSlash = (url: string): string => url.replace(/\/+$/, '');

/** The settings of `hook` that differ from the wanted ones; empty when it is already right. */
function toChanges(hook: ListedHook, hookUrl: string, events: readonly string[]): WebhookSetting[] {
  const changes: WebhookSetting[] = [];
  if (hook.config.url !== hookUrl) changes.push('url');
  const have = new Set(hook.events);
  if (have.size !== new Set(events).size || events.some((e) => !have.has(e))) changes.push('events');
  if (hook.config.content_type !== 'json') changes.push('content_type');
  // GitHub answers "0" or 0; absent means its default, 0
  if (String(hook.config.insecure_ssl ?? '0') !== '0') changes.push('insecure_ssl');
  if (!hook.active) changes.push('active');
  // GitHub shows a set secret as "********" and never its value, so only its absence is visible
  // (https://docs.github.com/rest/repos/webhooks#get-a-repository-webhook)
  if ((hook.config.secret ?? '') === '') changes.push('secret');
  return changes;
}

/** The HTTP status of an Octokit `RequestError`, or null (network failure, abort, anything else). */
function statusOf(err: unknown): number | null {
  const status = typeof err === 'object' && err !== null && 'status' in err ? Number((err as { status: unknown }).status) : NaN;
  return Number.isInteger(status) && status >= 100 ? status : null;
}

const SCOPE = 'the token needs the admin:repo_hook scope (classic) or "Webhooks: write" (fine-grained) and admin rights on the repository';

/**
 * A reason an operator can act on. Only the status and message of the error are used:
 * Octokit's `RequestError` also carries the request, whose body holds the secret.
 */
function toReason(step: string, err: unknown): string {
  const status = statusOf(err);
  const message = toMessage(err);
  switch (status) {
    case 401:
      return `${step}: GitHub refused the token (401): ${message}`;
    case 403:
      return `${step}: forbidden (403); ${SCOPE}: ${message}`;
    // GitHub answers 404, not 403, when the token may not see the repository's hooks
    case 404:
      return `${step}: not found (404): the repository does not exist, or ${SCOPE}: ${message}`;
    case 422:
      return `${step}: GitHub refused the hook (422), e.g. a URL it cannot reach: ${message}`;
    case null:
      return `${step}: ${message}`;
    default:
      return `${step}: GitHub answered ${status}: ${message}`;
  }
}

/**
 * Makes sure every repository in `repositories` has one webhook delivering `events` to
 * `hookUrl` as JSON, signed with `secret`, with TLS verification on (`insecure_ssl` "0") and
 * active; follows GitHub's REST "Repository webhooks"
 * (https://docs.github.com/rest/repos/webhooks). Per repository: list the hooks (all pages);
 * the first hook whose `config.url` is `hookUrl` (ignoring trailing slashes) is ours; none →
 * create one (`created`); one whose events (as a set), content type, `insecure_ssl`, active
 * flag or URL differ, or that has no secret → update it, sending the secret too (`updated`);
 * otherwise no write (`unchanged`). GitHub never returns a hook's secret, so a hook set up
 * with another secret looks right and is left alone: after changing the secret, delete the
 * hook on GitHub and the next run creates it again. Other hooks are never touched.
 * Repositories are done one after the other (GitHub asks for serial writes).
 *
 * Never throws or rejects: a repository that cannot be done (404, 403 without admin rights,
 * a name that is not `owner/repo`, GitHub down) is reported `failed` with the reason, and the
 * others are still done. Logs one line per repository (info, or warn when failed); never the
 * secret.
 *
 * @returns one report per distinct repository, in the order given
 */
export async function ensureWebhooks(options: EnsureWebhooksOptions): Promise<RegistrationReport[]> {
  const { octokit, secret, log, signal } = options;
  const hookUrl = options.hookUrl;
  const events = [...(options.events ?? WEBHOOK_EVENTS)];
  const config = { url: hookUrl, content_type: 'json', insecure_ssl: '0', secret };
  const request = signal === undefined ? {} : { request: { signal } };
  const reports: RegistrationReport[] = [];

  for (const repository of new Set(options.repositories)) {
    const report = await (async (): Promise<RegistrationReport> => {
      if (signal?.aborted) return { repository, outcome: 'failed', status: null, reason: 'stopped before this repository was done' };
      const [owner = '', repo = '', ...rest] = repository.split('/');
      try {
        if (rest.length > 0) throw new Error('more than one "/"');
        assertRepoName(owner, 'owner');
        assertRepoName(repo, 'repository name');
      } catch (err) {
        return {
          repository,
          outcome: 'failed',
          status: null,
          reason: `not an owner/repo name: ${JSON.stringify(repository.slice(0, 120))} (${toMessage(err)})`,
        };
      }

      let hooks: ListedHook[];
      try {
        hooks = await octokit.paginate(octokit.rest.repos.listWebhooks, { owner, repo, per_page: 100, ...request });
      } catch (err) {
        return { repository, outcome: 'failed', status: statusOf(err), reason: toReason('listing the webhooks', err) };
      }
      const ours = hooks.find((hook) => hook.config.url !== undefined && withoutTrailingSlash(hook.config.url) === withoutTrailingSlash(hookUrl));

      if (ours === undefined) {
        try {
          const { data } = await octokit.rest.repos.createWebhook({ owner, repo, name: 'web', active: true, events, config, ...request });
          return { repository, outcome: 'created', hookId: data.id };
        } catch (err) {
          return { repository, outcome: 'failed', status: statusOf(err), reason: toReason('creating the webhook', err) };
        }
      }

      const changed = toChanges(ours, hookUrl, events);
      if (changed.length === 0) return { repository, outcome: 'unchanged', hookId: ours.id };
      try {
        // `events` and `config` replace the hook's whole lists, so the result is exactly ours
        await octokit.rest.repos.updateWebhook({ owner, repo, hook_id: ours.id, active: true, events, config, ...request });
        return { repository, outcome: 'updated', hookId: ours.id, changed };
      } catch (err) {
        return { repository, outcome: 'failed', status: statusOf(err), reason: toReason('updating the webhook', err) };
      }
    })();
    reports.push(report);
    if (report.outcome === 'failed') log.warn({ repository, status: report.status, reason: report.reason }, 'webhook registration failed');
    else
      log.info(
        { repository, outcome: report.outcome, hookId: report.hookId, ...(report.outcome === 'updated' ? { changed: report.changed } : {}) },
        'webhook registered',
      );
  }
  return reports;
}

/** The outcome of the last finished registration run. */
export interface WebhookRegistrationRun {
  /** when the run finished, ISO 8601 */
  at: string;
  registrations: readonly RegistrationReport[];
}

/**
 * Keeps the webhooks of the configured repositories registered, one run at a time.
 * Lifecycle: made once at start; `sync` at start and after every config reload; `close` at
 * shutdown. It never throws and never rejects.
 */
export interface WebhookRegistrar {
  /**
   * Registers the webhook on every repository of `repositories` (`owner/repo`) through
   * {@link ensureWebhooks}. Runs are serialised: a call while a run is going waits for it, and
   * of the calls that waited only the latest list is run; every caller of that batch gets its
   * reports. After `close` the reports are all `failed` (stopped).
   */
  sync(repositories: readonly string[]): Promise<RegistrationReport[]>;
  /** The last finished run, or null before the first one finished. */
  last(): WebhookRegistrationRun | null;
  /** Aborts the run in progress (its remaining requests fail at once) and the ones waiting. */
  close(): void;
}

/**
 * Creates the registrar for one hook URL and secret (see {@link ensureWebhooks} for what a
 * run does). `now` gives the time of {@link WebhookRegistrationRun.at} (tests).
 */
export function createWebhookRegistrar(options: Omit<EnsureWebhooksOptions, 'repositories' | 'signal'> & { now?: () => Date }): WebhookRegistrar {
  const { log } = options;
  const now = options.now ?? (() => new Date());
  const abort = new AbortController();
  let last: WebhookRegistrationRun | null = null;
  let running = false;
  let waiting: { repositories: readonly string[]; callers: ((reports: RegistrationReport[]) => void)[] } | null = null;

  async function pump(): Promise<void> {
    if (running) return;
    running = true;
    while (waiting !== null) {
      const batch = waiting;
      waiting = null;
      let reports: RegistrationReport[];
      try {
        reports = await ensureWebhooks({ ...options, repositories: batch.repositories, signal: abort.signal });
      } catch (err) {
        // ensureWebhooks reports failures as values; this only guards the callers against a bug
        reports = batch.repositories.map((repository) => ({ repository, outcome: 'failed', status: null, reason: `registration failed: ${toMessage(err)}` }));
      }
      last = { at: now().toISOString(), registrations: reports };
      const count = (outcome: RegistrationOutcome) => reports.filter((r) => r.outcome === outcome).length;
      log.info(
        { repositories: reports.length, created: count('created'), updated: count('updated'), unchanged: count('unchanged'), failed: count('failed') },
        'webhook registration done',
      );
      for (const resolve of batch.callers) resolve(reports);
    }
    running = false;
  }

  return {
    sync(repositories) {
      return new Promise((resolve) => {
        if (waiting === null) waiting = { repositories: [...repositories], callers: [resolve] };
        else {
          waiting.repositories = [...repositories];
          waiting.callers.push(resolve);
        }
        void pump();
      });
    },
    last: () => last,
    close() {
      abort.abort();
    },
  };
}
