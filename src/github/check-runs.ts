import type { Octokit } from '@octokit/rest';
import { CONTAINER_WORKDIR } from '../builds/build-execution.js';
import { isTerminal, type Build } from '../builds/build.js';
import type { BuildLogs } from '../builds/build-log.js';
import { toMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { createSerializeByKey } from '../serialize-by-key.js';
import type { CheckRunEntry, CheckRunOutbox, CheckRunState, StoredAnnotation } from '../store/check-run-outbox.js';
import { createAnnotationCollector, toAnnotationBatches, type AnnotationCollector } from './annotations.js';
import { REBUILD_ACTION, toBuildCheckRunState, type LogTail } from './check-run-output.js';
import { toRetryDelay } from './commit-statuses.js';
import { createOutboxSender } from './outbox-sender.js';
import { GitHubAuthError, type GitHubAuth } from './github-auth.js';

/** Least time between two updates of one check run while it is not completed, in ms (default of `intervalMs`). */
export const CHECK_RUN_INTERVAL_MS = 5000;

/** Most annotations one check run gets from its build's log (default of `maxAnnotations`). */
export const MAX_BUILD_ANNOTATIONS = 200;

/** Lines of the log's tail read for the text of a running build's check run, and the bytes it may take. */
const RUNNING_TAIL = { lines: 100, bytes: 16 * 1024 };
/** Lines of the log's tail read for a completed check run's text (it keeps as many as fit). */
const FINAL_TAIL_LINES = 2000;
/** How long the completed update waits for the build's log to be closed (its last lines written). */
const LOG_CLOSE_WAIT_MS = 10_000;
/** `nextAttemptAt` of an entry with nothing to send: it waits for the next change. */
const IDLE = Number.MAX_SAFE_INTEGER;

/** A check run that belongs to no build, e.g. `autobuilder/config` on a config repository commit. */
export interface NewCheckRun extends Pick<CheckRunEntry, 'key' | 'owner' | 'repo' | 'headSha' | 'name' | 'externalId' | 'detailsUrl'> {
  state: CheckRunState;
  /** sent with the completed state, 50 a request */
  annotations: StoredAnnotation[];
}

/**
 * Creates and updates check runs (https://docs.github.com/rest/checks/runs), one per build.
 *
 * Lifecycle of a build's check run: created at the build's first report (`queued`, or at once
 * `completed` for a cache hit), `in_progress` with `started_at` when it runs, its summary
 * and the tail of its log refreshed while it runs, then `completed` with its conclusion,
 * output and the annotations found in its log lines. Every change goes through the durable
 * outbox, which keeps the check run's GitHub id: a server that starts again PATCHes the same
 * check run. Coalesced: at most one request per check run per interval while it is not
 * completed (the newest state wins); the completed state is sent at once. An update never
 * overtakes the create: it waits for the create to return the id. Failures are logged and
 * tried again with a growing delay; a refusal (a 4xx other than 408/429) gives that change up.
 * Nothing here throws to a caller or holds a build up.
 */
export interface CheckRunPublisher {
  /**
   * Stores the check run of `build` as it is now and starts sending it; resolves once it is
   * stored (for the completed state: after the build's log is closed and its tail read), not sent.
   */
  publish(build: Build): Promise<void>;
  /**
   * A change of a build that commit statuses do not report (it started, its workspace is
   * known): sent only for a build whose check run {@link CheckRunPublisher.publish} began.
   */
  progress(build: Build): void;
  /** Stores a check run of no build (see {@link NewCheckRun}) and starts sending it. */
  publishCheck(check: NewCheckRun): Promise<void>;
  /** Resolves when every change stored so far that is due has been tried (tests, shutdown). */
  flush(): Promise<void>;
  /** Stops sending and closes the outbox; what is left is sent after the next start. */
  close(): void;
}

/** What the publisher keeps of a build whose check run is not completed. */
interface LiveBuild {
  build: Build;
  collector: AnnotationCollector;
  /** the log's text is refreshed at this timer (running builds, after new lines) */
  refresh: NodeJS.Timeout | undefined;
  lastPutAt: number;
}

/** The status of a GitHub answer, when it has one. */
const statusOf = (err: unknown): number => (typeof err === 'object' && err !== null && 'status' in err ? Number((err as { status: unknown }).status) : NaN);

/** True for failures that will not change by trying again: a 4xx other than 408 and 429, no credentials, no installation. */
function isPermanent(err: unknown): boolean {
  if (err instanceof GitHubAuthError) return err.code === 'GITHUB_AUTH_NONE' || err.code === 'GITHUB_APP_NOT_INSTALLED';
  const status = statusOf(err);
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

/**
 * Creates the publisher over the durable `outbox` (closed by its `close`), with the clients
 * of `auth` (one per repository: an installation token in App mode). Log lines of the builds
 * it follows come from `logs` as they are written, whether the build runs here or on a
 * worker: they feed each build's annotation collector (paths relative to the container's
 * workspace, at most `maxAnnotations`, default {@link MAX_BUILD_ANNOTATIONS}) and refresh its
 * log tail. `intervalMs` (default {@link CHECK_RUN_INTERVAL_MS}) is the least time between
 * two updates of one check run while it is not completed. `publicUrl` makes the details
 * URL (`<publicUrl>/builds/<id>`) and the links of the summary.
 */
export function createCheckRunPublisher(options: {
  auth: GitHubAuth;
  outbox: CheckRunOutbox;
  logs: Pick<BuildLogs, 'onAppend' | 'onClose' | 'readLines' | 'stat'>;
  publicUrl: string;
  log: Logger;
  intervalMs?: number;
  maxAnnotations?: number;
  now?: () => number;
}): CheckRunPublisher {
  const { auth, outbox, logs, log } = options;
  const publicUrl = options.publicUrl.replace(/\/+$/, '');
  const now = options.now ?? Date.now;
  const intervalMs = options.intervalMs ?? CHECK_RUN_INTERVAL_MS;
  const maxAnnotations = options.maxAnnotations ?? MAX_BUILD_ANNOTATIONS;
  const serialize = createSerializeByKey();
  const live = new Map<string, LiveBuild>();

  let closed = false;
  /** read through a call: `close` may run while a pass awaits */
  const isClosed = () => closed;
  const sender = createOutboxSender({
    pass: async () => {
      let sent = false;
      for (const listed of outbox.due(now(), 100)) {
        if (isClosed()) return false;
        // changed since it was listed: sent as it is now, or later
        const entry = outbox.get(listed.key);
        if (entry === null || entry.nextAttemptAt > now()) continue;
        await send(entry);
        sent = true;
      }
      return sent;
    },
    nextDueAt: () => {
      const at = outbox.nextDueAt();
      return at !== null && at < IDLE ? at : null;
    },
    now,
    // the outbox itself failing (its database closed, full): said, never an unhandled rejection
    onError: (err) => log.error({ err: toMessage(err) }, 'check run outbox failed; check runs wait for the next change'),
  });
  const track = (work: Promise<void>) => sender.track(work);

  const stopFollowing = logs.onAppend(({ buildId, text }) => {
    const followed = live.get(buildId);
    if (followed === undefined) return;
    followed.collector.add(text);
    if (followed.build.state === 'running' && followed.refresh === undefined && !closed) {
      const wait = Math.max(0, followed.lastPutAt + intervalMs - now());
      followed.refresh = setTimeout(() => {
        followed.refresh = undefined;
        if (live.get(buildId) !== followed || closed) return;
        track(serialize(buildId, () => putBuild(followed.build))).catch((err: unknown) => failedToStore(buildId, err));
      }, wait).unref();
    }
  });

  const failedToStore = (buildId: string, err: unknown) => log.error({ buildId, err: toMessage(err) }, 'check run could not be stored');

  async function readTail(buildId: string, lines: number): Promise<LogTail | null> {
    try {
      const read = await logs.readLines(buildId, { tail: lines });
      return read === null ? null : { lines: read.lines, total: read.total };
    } catch (err) {
      log.warn({ buildId, err: toMessage(err) }, 'build log tail could not be read for its check run');
      return null;
    }
  }

  /** Resolves once no writer of this process holds the log of `buildId` (or after a while). */
  function logClosed(buildId: string): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        off();
        clearTimeout(giveUp);
        resolve();
      };
      const off = logs.onClose((id) => {
        if (id === buildId) done();
      });
      const giveUp = setTimeout(done, LOG_CLOSE_WAIT_MS).unref();
      logs.stat(buildId).then((stat) => {
        if (stat === null || !stat.live) done();
      }, done);
    });
  }

  /**
   * Stores `state` as the newest of check run `key` (a new entry from `base` when there is
   * none). An unchanged state stores nothing. Coalescing: a state that is not completed is due
   * an interval after the last change GitHub took; a completed one at once (a failing
   * GitHub's backoff still holds).
   */
  function put(
    key: string,
    base: Omit<
      CheckRunEntry,
      'desired' | 'version' | 'sentVersion' | 'sentStatus' | 'annotations' | 'droppedAnnotations' | 'checkRunId' | 'lastSentAt' | 'attempts' | 'nextAttemptAt'
    >,
    state: CheckRunState,
    final: { annotations: StoredAnnotation[]; dropped: number } | null,
  ): boolean {
    const existing = outbox.get(key);
    if (existing !== null && final === null && JSON.stringify(existing.desired) === JSON.stringify(state)) return false;
    // a completed check run is never taken back to running (a late refresh of its build)
    if (existing?.desired.status === 'completed' && final === null) return false;
    const entry: CheckRunEntry = existing ?? {
      ...base,
      checkRunId: null,
      desired: state,
      version: 0,
      sentVersion: 0,
      sentStatus: null,
      annotations: [],
      droppedAnnotations: 0,
      lastSentAt: null,
      attempts: 0,
      nextAttemptAt: now(),
    };
    entry.desired = state;
    entry.detailsUrl = base.detailsUrl;
    entry.version += 1;
    if (final !== null) {
      entry.annotations = final.annotations;
      entry.droppedAnnotations = final.dropped;
    }
    const at = isPrompt(entry) ? now() : Math.max(now(), (entry.lastSentAt ?? 0) + intervalMs);
    entry.nextAttemptAt = entry.attempts > 0 && existing !== null && existing.nextAttemptAt !== IDLE ? Math.max(at, existing.nextAttemptAt) : at;
    outbox.put(entry);
    return true;
  }

  /** Stores the check run of `build` as it is now (see {@link CheckRunPublisher.publish}). */
  async function putBuild(build: Build): Promise<void> {
    if (closed) return;
    const [owner = '', repo = ''] = build.repo.split('/');
    const base = {
      key: build.id,
      owner,
      repo,
      headSha: build.sha,
      name: build.context,
      externalId: build.id,
      detailsUrl: `${publicUrl}/builds/${build.id}`,
      actions: [{ ...REBUILD_ACTION }],
    };
    const followed = live.get(build.id);
    if (isTerminal(build.state)) {
      if (followed !== undefined) {
        clearTimeout(followed.refresh);
        await logClosed(build.id);
        live.delete(build.id);
      }
      const annotations = followed?.collector.annotations ?? [];
      const dropped = followed?.collector.dropped ?? 0;
      const state = toBuildCheckRunState(build, {
        publicUrl,
        logTail: await readTail(build.id, FINAL_TAIL_LINES),
        annotations: { count: annotations.length, dropped },
      });
      if (isClosed()) return;
      put(build.id, base, state, { annotations: annotations.map((a) => ({ ...a })), dropped });
    } else {
      // a build no longer followed has ended: its completed state is stored, or on its way
      if (followed === undefined) return;
      const tail = build.state === 'running' ? await readTail(build.id, RUNNING_TAIL.lines) : null;
      const { collector } = followed;
      const state = toBuildCheckRunState(build, {
        publicUrl,
        logTail: tail,
        annotations: { count: collector.annotations.length, dropped: collector.dropped },
        maxTextBytes: RUNNING_TAIL.bytes,
      });
      if (isClosed() || live.get(build.id) !== followed) return;
      put(build.id, base, state, null);
      followed.lastPutAt = now();
    }
    await outbox.flush();
    void sender.send();
  }

  /** Sends the newest state of `entry` (or its next batch of annotations) and records what GitHub took. */
  async function send(entry: CheckRunEntry): Promise<void> {
    const { key, version } = entry;
    const fields = { key, name: entry.name, checkRunId: entry.checkRunId, status: entry.desired.status, attempt: entry.attempts + 1 };
    const completed = entry.desired.status === 'completed';
    const batch = completed ? (toAnnotationBatches(entry.annotations)[0] ?? []) : [];
    const full = entry.checkRunId === null || entry.sentVersion < version;
    const { desired } = entry;
    const output =
      desired.output === null
        ? undefined
        : {
            title: desired.output.title,
            summary: desired.output.summary,
            ...(full && desired.output.text !== null ? { text: desired.output.text } : {}),
            ...(batch.length > 0 ? { annotations: batch } : {}),
          };
    const body = full
      ? {
          status: desired.status,
          ...(desired.conclusion === null ? {} : { conclusion: desired.conclusion }),
          ...(desired.startedAt === null ? {} : { started_at: desired.startedAt }),
          ...(desired.completedAt === null ? {} : { completed_at: desired.completedAt }),
          ...(output === undefined ? {} : { output }),
          ...(entry.actions.length === 0 ? {} : { actions: entry.actions }),
        }
      : { ...(output === undefined ? {} : { output }) };
    let checkRunId = entry.checkRunId;
    try {
      const octokit: Octokit = await auth.octokitFor(`${entry.owner}/${entry.repo}`);
      if (checkRunId === null) {
        const created = await octokit.rest.checks.create({
          owner: entry.owner,
          repo: entry.repo,
          name: entry.name,
          head_sha: entry.headSha,
          external_id: entry.externalId,
          details_url: entry.detailsUrl,
          ...body,
        });
        checkRunId = created.data.id;
      } else {
        await octokit.rest.checks.update({ owner: entry.owner, repo: entry.repo, check_run_id: checkRunId, details_url: entry.detailsUrl, ...body });
      }
    } catch (err) {
      if (closed) return;
      const current = outbox.get(key);
      if (current === null) return;
      if (isPermanent(err)) {
        log.error({ ...fields, status: statusOf(err), err: toMessage(err) }, 'check run refused by GitHub; this change is given up');
        if (current.checkRunId === null) {
          // never created: nothing to PATCH later either
          outbox.remove(key);
          return;
        }
        // the check run stays: a later change is sent to it
        current.sentVersion = Math.max(current.sentVersion, version);
        if (batch.length > 0 && current.version === version) current.annotations = current.annotations.slice(batch.length);
        settle(current);
        return;
      }
      current.attempts += 1;
      current.nextAttemptAt = now() + toRetryDelay(current.attempts - 1);
      outbox.put(current);
      log.warn({ ...fields, err: toMessage(err) }, 'check run request failed; will retry');
      return;
    }
    if (closed) return;
    const current = outbox.get(key);
    if (current === null) return;
    current.checkRunId ??= checkRunId;
    if (version >= current.sentVersion) current.sentStatus = entry.desired.status;
    current.sentVersion = Math.max(current.sentVersion, version);
    // a newer completed state brought its own annotations
    if (batch.length > 0 && current.version === version) current.annotations = current.annotations.slice(batch.length);
    current.lastSentAt = now();
    current.attempts = 0;
    log.debug({ ...fields, checkRunId: current.checkRunId, annotations: batch.length }, 'check run sent');
    settle(current);
  }

  /**
   * True when the newest state of `entry` goes at once: the first one, a change of status
   * (queued → in_progress → completed) or the completed one; other changes (a running build's
   * summary and log tail) wait an interval after the last one GitHub took (coalescing).
   */
  function isPrompt(entry: CheckRunEntry): boolean {
    return entry.lastSentAt === null || entry.desired.status === 'completed' || entry.desired.status !== entry.sentStatus;
  }

  /** Stores what is left of `entry` to send, and when; removes it when nothing is. */
  function settle(entry: CheckRunEntry): void {
    const pending = entry.sentVersion < entry.version;
    if (!pending && entry.annotations.length === 0) {
      if (entry.desired.status === 'completed') {
        outbox.remove(entry.key);
        return;
      }
      entry.nextAttemptAt = IDLE;
    } else if (pending && !isPrompt(entry)) {
      entry.nextAttemptAt = Math.max(now(), (entry.lastSentAt ?? 0) + intervalMs);
    } else {
      entry.nextAttemptAt = now();
    }
    outbox.put(entry);
  }

  void sender.send(); // what an earlier process left
  return {
    publish(build) {
      const copy = structuredClone(build);
      if (!isTerminal(copy.state) && !live.has(copy.id)) {
        live.set(copy.id, {
          build: copy,
          collector: createAnnotationCollector({ workspaceDir: CONTAINER_WORKDIR, maxAnnotations }),
          refresh: undefined,
          lastPutAt: 0,
        });
      }
      const followed = live.get(copy.id);
      if (followed !== undefined && !isTerminal(copy.state)) followed.build = copy;
      return track(serialize(copy.id, () => putBuild(copy)));
    },
    progress(build) {
      const followed = live.get(build.id);
      if (followed === undefined || isTerminal(build.state)) return;
      const copy = structuredClone(build);
      followed.build = copy;
      track(serialize(copy.id, () => putBuild(copy))).catch((err: unknown) => failedToStore(copy.id, err));
    },
    publishCheck(check) {
      return track(
        serialize(check.key, async () => {
          const { state, annotations, ...base } = check;
          put(check.key, { ...base, actions: [] }, state, state.status === 'completed' ? { annotations, dropped: 0 } : null);
          await outbox.flush();
          void sender.send();
        }),
      );
    },
    flush() {
      return sender.flush();
    },
    close() {
      closed = true;
      sender.close();
      stopFollowing();
      for (const followed of live.values()) clearTimeout(followed.refresh);
      live.clear();
      outbox.close();
    },
  };
}
