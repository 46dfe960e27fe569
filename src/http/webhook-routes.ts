import { createHash } from 'node:crypto';
import Router from '@koa/router';
import type { BuildRequest } from '../builds/build-request.js';
import type { Coordinator } from '../builds/coordinator.js';
import { toPullRequestRef } from '../builds/refs.js';
import { AppError, toMessage } from '../errors.js';
import type { ConfigRepository } from '../config-repo/config-repository.js';
import type { GitHubAuth } from '../github/github-auth.js';
import type { Logger } from '../logger.js';
import type { BuildStore } from '../store/build-store.js';
import type { DeadRefs } from '../store/sqlite-dead-refs.js';
import type { Inbox } from '../webhooks/inbox.js';
import { readBody } from '../webhooks/read-body.js';
import { toBuildRequest } from '../webhooks/to-build-request.js';
import { toRebuildRequests } from '../webhooks/to-rebuild-requests.js';
import type { SignatureVerifier } from '../webhooks/verify-signature.js';
import type { RouteGuards } from './route-access.js';

const header = (value: string | string[] | undefined): string | null => (typeof value === 'string' && value !== '' ? value : null);

/** The repository and ref a payload names, where it names them (for the delivery's log line). */
function subjectOf(payload: unknown): { repo?: string; ref?: string } {
  if (typeof payload !== 'object' || payload === null) return {};
  const { repository, ref } = payload as { repository?: unknown; ref?: unknown };
  const fullName = typeof repository === 'object' && repository !== null ? (repository as { full_name?: unknown }).full_name : undefined;
  return { ...(typeof fullName === 'string' ? { repo: fullName } : {}), ...(typeof ref === 'string' ? { ref } : {}) };
}

/**
 * The dedupe key of a delivery: its `X-GitHub-Delivery`, or for a signed delivery without
 * one, `sha256:<hex>` of its body (the same body sent again is the same delivery).
 */
export function toDeliveryId(headerValue: string | string[] | undefined, body: Buffer): string {
  return header(headerValue) ?? `sha256:${createHash('sha256').update(body).digest('hex')}`;
}

/**
 * `POST /hooks/github`: GitHub webhook receiver. Order matters: the body is read raw
 * (25 MB cap, 413), the signature checked over those bytes (401), then decoded as UTF-8
 * and parsed (400). Every delivery is stored under {@link toDeliveryId}.
 * Answers `ping` and ignored events with 200 and the reason, build requests, re-runs of check
 * runs and suites (see to-rebuild-requests.ts) and closed pull requests with 202 and the
 * delivery id; `installation` and `installation_repositories` with 200, after dropping what
 * `installations` holds about the installation and its repositories; the build lookup and queueing, and the
 * cancelling of a closed pull request's waiting builds, happen after the answer.
 * Each delivery writes one line at info, `delivery handled`, with its `deliveryId`, `event`,
 * `repo`, `ref`, `outcome` and `ms` (since it came in), once its outcome is known: for a build
 * request that is after the build lookup (written by the inbox), for a closed pull request
 * after its cancels.
 */
export function createWebhookRoutes(deps: {
  access: RouteGuards;
  verify: SignatureVerifier;
  inbox: Inbox;
  /** cancels the waiting builds of a closed pull request */
  coordinator: Pick<Coordinator, 'cancelPullRequest'>;
  /** a push to the config repository's branch reloads it (after the answer) */
  configRepository: Pick<ConfigRepository, 'isConfigPush' | 'reload'>;
  /** the builds a re-run check run or suite names, and the requests they were made for */
  store: Pick<BuildStore, 'get' | 'getRequest' | 'findBySha'>;
  /** the GitHub App's id (config `github.app.appId`): re-runs of other apps' check runs are ignored; null or absent without an App */
  appId?: number | null | undefined;
  /** marks deleted branches and tags and closed pull requests, whose lineage heads retention drops later */
  deadRefs?: Pick<DeadRefs, 'mark'> | undefined;
  /** the GitHub App's cache of installations, dropped for what an installation webhook names */
  installations?: Pick<GitHubAuth, 'forget'> | undefined;
  log: Logger;
}): Router {
  const router = new Router();
  const { inbox } = deps;
  const markDead = (repo: string, ref: string, deadAt: string, log: Logger) => {
    try {
      deps.deadRefs?.mark({ repo, ref, deadAt });
    } catch (err) {
      log.warn({ err: toMessage(err), repo, ref }, 'could not mark a deleted ref for retention');
    }
  };
  // open: the signature over the raw body is the authentication
  router.post('/hooks/github', deps.access.open, async (ctx) => {
    const startedAt = performance.now();
    const ms = () => Math.round(performance.now() - startedAt);
    const body = await readBody(ctx.req);
    await deps.verify(body, ctx.req.headers);
    const deliveryId = toDeliveryId(ctx.req.headers['x-github-delivery'], body);
    const event = header(ctx.req.headers['x-github-event']);
    if (event === null) throw new AppError('BAD_REQUEST', 'missing X-GitHub-Event header', { status: 400 });
    let payload: unknown;
    let text: string;
    try {
      // GitHub sends UTF-8; a lenient decode would turn bad bytes into U+FFFD and parse
      text = new TextDecoder('utf-8', { fatal: true }).decode(body);
    } catch {
      throw new AppError('BAD_REQUEST', 'the body is not valid UTF-8', { status: 400 });
    }
    try {
      payload = JSON.parse(text);
    } catch {
      throw new AppError('BAD_REQUEST', 'the body is not JSON (set the webhook content type to application/json)', { status: 400 });
    }
    const configReload = event === 'push' && deps.configRepository.isConfigPush(payload);
    const log = deps.log.child({ deliveryId, event, ...(configReload ? { configReload } : {}) });
    if (configReload) {
      ctx.set('X-Autobuilder-Config-Reload', 'started');
      setImmediate(() => void deps.configRepository.reload('webhook'));
    }
    const outcome = toBuildRequest(event, payload, deliveryId);
    const receivedAt = new Date().toISOString();
    switch (outcome.kind) {
      case 'ping':
        await inbox.record({ id: deliveryId, event, receivedAt, outcome: 'ping' });
        log.info({ ...subjectOf(payload), outcome: 'ping', ms: ms() }, 'delivery handled');
        ctx.status = 200;
        ctx.body = { ok: true, event, deliveryId, zen: outcome.zen };
        return;
      case 'ignored':
        await inbox.record({ id: deliveryId, event, receivedAt, outcome: `ignored: ${outcome.reason}` });
        if (outcome.deletedRef !== undefined) markDead(`${outcome.deletedRef.owner}/${outcome.deletedRef.repo}`, outcome.deletedRef.ref, receivedAt, log);
        log.info({ ...subjectOf(payload), outcome: 'ignored', reason: outcome.reason, ms: ms() }, 'delivery handled');
        ctx.status = 200;
        ctx.body = { ignored: true, event, deliveryId, reason: outcome.reason };
        return;
      case 'build': {
        const request = outcome.request;
        const subject = { repo: `${request.owner}/${request.repo}`, ref: request.ref, sha: request.sha };
        // stored (synchronous=FULL, group commit) before the answer: an accepted delivery is never lost
        if (!(await inbox.accept({ id: deliveryId, event, receivedAt, outcome: 'accepted' }, request))) {
          log.info({ ...subject, outcome: 'duplicate', ms: ms() }, 'delivery handled');
          ctx.status = 200;
          ctx.body = { duplicate: true, event, deliveryId, reason: 'this delivery was received before' };
          return;
        }
        log.debug({ ...subject, ms: ms() }, 'delivery accepted');
        ctx.status = 202;
        ctx.body = { accepted: true, event, deliveryId };
        setImmediate(() => void inbox.handOn(deliveryId, request, { log, startedAt }));
        return;
      }
      case 'rebuild': {
        const { target } = outcome;
        const subject = { repo: `${target.owner}/${target.repo}`, sha: target.headSha, trigger: target.trigger };
        const resolved = toRebuildRequests(target, { store: deps.store, appId: deps.appId ?? null, deliveryId });
        if (resolved.kind === 'ignored') {
          await inbox.record({ id: deliveryId, event, receivedAt, outcome: `ignored: ${resolved.reason}` });
          log.info({ ...subject, outcome: 'ignored', reason: resolved.reason, ms: ms() }, 'delivery handled');
          ctx.status = 200;
          ctx.body = { ignored: true, event, deliveryId, reason: resolved.reason };
          return;
        }
        // each request stored before the answer, under its own delivery id (see RebuildOutcome)
        const accepted: BuildRequest[] = [];
        for (const { request } of resolved.requests) {
          if (await inbox.accept({ id: request.deliveryId ?? deliveryId, event, receivedAt, outcome: 'accepted' }, request)) accepted.push(request);
        }
        const rebuilds = resolved.requests.flatMap((r) => r.rebuilds.map((b) => b.id));
        if (accepted.length === 0) {
          log.info({ ...subject, outcome: 'duplicate', ms: ms() }, 'delivery handled');
          ctx.status = 200;
          ctx.body = { duplicate: true, event, deliveryId, reason: 'this delivery was received before' };
          return;
        }
        log.debug({ ...subject, rebuilds, ms: ms() }, 'delivery accepted');
        ctx.status = 202;
        ctx.body = { accepted: true, event, deliveryId, rebuilds };
        setImmediate(() => {
          for (const request of accepted) void inbox.handOn(request.deliveryId ?? deliveryId, request, { log, startedAt });
        });
        return;
      }
      case 'installation': {
        const { change } = outcome;
        deps.installations?.forget({ installationId: change.installationId, repositories: [...change.added, ...change.removed] });
        await inbox.record({ id: deliveryId, event, receivedAt, outcome: `installation ${change.action}` });
        const { action, installationId, account, added, removed } = change;
        log.info({ outcome: 'installation', action, installationId, account, added, removed, ms: ms() }, 'delivery handled');
        ctx.status = 200;
        ctx.body = { ok: true, event, deliveryId, installation: change };
        return;
      }
      case 'cancel': {
        const { target, reason } = outcome;
        const subject = { repo: `${target.owner}/${target.repo}`, ref: toPullRequestRef(target.pullRequest), pullRequest: target.pullRequest };
        if (!(await inbox.record({ id: deliveryId, event, receivedAt, outcome: `cancel: ${reason}` }))) {
          log.info({ ...subject, outcome: 'duplicate', ms: ms() }, 'delivery handled');
          ctx.status = 200;
          ctx.body = { duplicate: true, event, deliveryId, reason: 'this delivery was received before' };
          return;
        }
        markDead(subject.repo, subject.ref, receivedAt, log);
        log.debug({ ...subject, ms: ms() }, 'pull request closed: cancelling its waiting builds');
        ctx.status = 202;
        ctx.body = { accepted: true, event, deliveryId, reason };
        setImmediate(() => {
          deps.coordinator.cancelPullRequest(target, reason).then(
            (cancelled) => log.info({ ...subject, outcome: 'cancelled', cancelled: cancelled.map((b) => b.id), ms: ms() }, 'delivery handled'),
            (err: unknown) =>
              log.error({ ...subject, outcome: 'failed', err: toMessage(err), ms: ms() }, 'waiting builds of a closed pull request not cancelled'),
          );
        });
        return;
      }
      default: {
        const unreachable: never = outcome;
        return unreachable;
      }
    }
  });
  return router;
}
