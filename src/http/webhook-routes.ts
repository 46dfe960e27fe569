import { createHash } from 'node:crypto';
import Router from '@koa/router';
import type { Coordinator } from '../builds/coordinator.js';
import { toPullRequestRef } from '../builds/refs.js';
import { AppError, toMessage } from '../errors.js';
import type { ConfigRepository } from '../config-repo/config-repository.js';
import type { Logger } from '../logger.js';
import type { DeadRefs } from '../store/sqlite-dead-refs.js';
import type { Inbox } from '../webhooks/inbox.js';
import { readBody } from '../webhooks/read-body.js';
import { toBuildRequest } from '../webhooks/to-build-request.js';
import type { SignatureVerifier } from '../webhooks/verify-signature.js';
import type { RouteGuards } from './route-access.js';

const header = (value: string | string[] | undefined): string | null => (typeof value === 'string' && value !== '' ? value : null);

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
 * Answers `ping` and ignored events with 200 and the reason, build requests and closed
 * pull requests with 202 and the delivery id; the build lookup and queueing, and the
 * cancelling of a closed pull request's waiting builds, happen after the answer.
 */
export function createWebhookRoutes(deps: {
  access: RouteGuards;
  verify: SignatureVerifier;
  inbox: Inbox;
  /** cancels the waiting builds of a closed pull request */
  coordinator: Pick<Coordinator, 'cancelPullRequest'>;
  /** a push to the config repository's branch reloads it (after the answer) */
  configRepository: Pick<ConfigRepository, 'isConfigPush' | 'reload'>;
  /** marks deleted branches and tags and closed pull requests, whose lineage heads retention drops later */
  deadRefs?: Pick<DeadRefs, 'mark'> | undefined;
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
    const log = deps.log.child({ deliveryId, event });
    if (event === 'push' && deps.configRepository.isConfigPush(payload)) {
      log.info('push to the config repository: reloading it');
      ctx.set('X-Autobuilder-Config-Reload', 'started');
      setImmediate(() => void deps.configRepository.reload('webhook'));
    }
    const outcome = toBuildRequest(event, payload, deliveryId);
    const receivedAt = new Date().toISOString();
    switch (outcome.kind) {
      case 'ping':
        await inbox.record({ id: deliveryId, event, receivedAt, outcome: 'ping' });
        log.info('ping received');
        ctx.status = 200;
        ctx.body = { ok: true, event, deliveryId, zen: outcome.zen };
        return;
      case 'ignored':
        await inbox.record({ id: deliveryId, event, receivedAt, outcome: `ignored: ${outcome.reason}` });
        if (outcome.deletedRef !== undefined) markDead(`${outcome.deletedRef.owner}/${outcome.deletedRef.repo}`, outcome.deletedRef.ref, receivedAt, log);
        log.info({ reason: outcome.reason }, 'delivery ignored');
        ctx.status = 200;
        ctx.body = { ignored: true, event, deliveryId, reason: outcome.reason };
        return;
      case 'build': {
        const request = outcome.request;
        // stored (synchronous=FULL, group commit) before the answer: an accepted delivery is never lost
        if (!(await inbox.accept({ id: deliveryId, event, receivedAt, outcome: 'accepted' }, request))) {
          log.info('redelivery of a delivery received before: no build');
          ctx.status = 200;
          ctx.body = { duplicate: true, event, deliveryId, reason: 'this delivery was received before' };
          return;
        }
        log.info({ repo: `${request.owner}/${request.repo}`, ref: request.ref, sha: request.sha }, 'delivery accepted');
        ctx.status = 202;
        ctx.body = { accepted: true, event, deliveryId };
        setImmediate(() => void inbox.handOn(deliveryId, request));
        return;
      }
      case 'cancel': {
        const { target, reason } = outcome;
        if (!(await inbox.record({ id: deliveryId, event, receivedAt, outcome: `cancel: ${reason}` }))) {
          log.info('redelivery of a delivery received before: nothing to cancel');
          ctx.status = 200;
          ctx.body = { duplicate: true, event, deliveryId, reason: 'this delivery was received before' };
          return;
        }
        markDead(`${target.owner}/${target.repo}`, toPullRequestRef(target.pullRequest), receivedAt, log);
        log.info({ repo: `${target.owner}/${target.repo}`, pullRequest: target.pullRequest }, 'pull request closed: cancelling its waiting builds');
        ctx.status = 202;
        ctx.body = { accepted: true, event, deliveryId, reason };
        setImmediate(() => {
          deps.coordinator.cancelPullRequest(target, reason).then(
            (cancelled) => log.info({ cancelled: cancelled.map((b) => b.id) }, 'waiting builds of a closed pull request cancelled'),
            (err: unknown) => log.error({ err: toMessage(err) }, 'waiting builds of a closed pull request not cancelled'),
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
