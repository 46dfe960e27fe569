import { isTerminal } from '../builds/build.js';
import { buildViewSchema, queueSchema, type BuildViewAnswer } from './api-schemas.js';
import { toShortRef, toStateText, toWaitingText } from './build-format.js';
import type { ApiClient, CliContext } from './cli-context.js';

/**
 * Seconds one long poll (`GET /api/builds/:id?wait=`) may last while a build runs: under
 * the 60 s a reverse proxy commonly allows an idle answer (nginx's proxy_read_timeout) and
 * fetch's 300 s for response headers (undici's headersTimeout).
 */
export const LONG_POLL_SECONDS = 50;

/** Seconds between looks at the queue while a build waits in it. */
export const QUEUED_POLL_SECONDS = 2;

/** `build <id> (<context>)`, how progress notes name a build. */
export function toBuildLabel(build: Pick<BuildViewAnswer, 'id' | 'context'>): string {
  return `build ${build.id} (${build.context})`;
}

/** Reads a build, waiting up to `waitSeconds` for it to end (the server answers at its end). */
export function getBuild(api: ApiClient, id: string, waitSeconds?: number, signal?: AbortSignal): Promise<BuildViewAnswer> {
  return api.get(`/api/builds/${encodeURIComponent(id)}`, buildViewSchema, {
    ...(waitSeconds === undefined ? {} : { query: { wait: waitSeconds } }),
    ...(signal === undefined ? {} : { signal }),
  });
}

/**
 * Tells, on stderr, why queued builds wait and when a build changes state; each line only
 * when it differs from the last one said of that build. Silent with `--json`.
 */
export interface ProgressReporter {
  /** Reads the queue (only when some build of `builds` is queued) and says why each queued one waits. */
  queued(builds: readonly BuildViewAnswer[]): Promise<void>;
  /** Says a build's state when it changed since the last call for it. */
  state(build: BuildViewAnswer): void;
}

/** Makes a {@link ProgressReporter} for one command. */
export function createProgressReporter(ctx: CliContext): ProgressReporter {
  const said = new Map<string, string>();
  const say = (id: string, text: string) => {
    if (said.get(id) === text) return;
    said.set(id, text);
    ctx.out.note(text);
  };
  const style = ctx.out.errStyle;
  return {
    async queued(builds) {
      const queued = builds.filter((b) => b.state === 'queued');
      if (queued.length === 0 || ctx.out.json) return;
      const queue = await ctx.api.get('/api/queue', queueSchema);
      for (const build of queued) {
        say(build.id, `${toBuildLabel(build)} queued: ${toWaitingText(build.id, queue) ?? 'about to start'}`);
      }
    },
    state(build) {
      if (build.state === 'queued') return;
      const outcome = isTerminal(build.state) && build.description !== null ? ` (${build.description})` : '';
      say(
        build.id,
        `${toBuildLabel(build)} ${toStateText(build.state, style)}${outcome}${build.state === 'running' ? ` on ${build.repo} ${toShortRef(build.ref)}` : ''}`,
      );
    },
  };
}

/**
 * Waits until every build has ended and returns them as they ended, in the given order. While
 * any is queued it looks at the queue every {@link QUEUED_POLL_SECONDS} and says why it waits;
 * otherwise it long-polls one build at a time (`?wait=` {@link LONG_POLL_SECONDS}).
 * @throws ServerError (exit 3) when the server cannot be reached or answers an error
 */
export async function waitForBuilds(ctx: CliContext, builds: readonly BuildViewAnswer[], reporter = createProgressReporter(ctx)): Promise<BuildViewAnswer[]> {
  const current = [...builds];
  for (;;) {
    for (const build of current) reporter.state(build);
    const open = current.findIndex((b) => !isTerminal(b.state));
    if (open === -1) return current;
    await reporter.queued(current);
    const anyQueued = current.some((b) => b.state === 'queued');
    current[open] = await getBuild(ctx.api, (current[open] as BuildViewAnswer).id, anyQueued ? QUEUED_POLL_SECONDS : LONG_POLL_SECONDS);
    // the others moved on meanwhile: one plain read each tells their state
    for (const [i, build] of current.entries()) if (i !== open && !isTerminal(build.state)) current[i] = await getBuild(ctx.api, build.id);
  }
}

/**
 * Streams a build's log (`GET /api/builds/:id/log`, with `?follow=1` until the build ends)
 * and hands each piece of text to `onText`, decoded as UTF-8 across chunk boundaries.
 * Resolves with whether the text ended with a newline (an empty log does).
 * @throws ServerError (exit 3) when the server cannot be reached or answers an error
 */
export async function streamLog(
  api: ApiClient,
  id: string,
  follow: boolean,
  onText: (text: string) => void,
  signal?: AbortSignal,
): Promise<{ endsWithNewline: boolean }> {
  const response = await api.request(`/api/builds/${encodeURIComponent(id)}/log`, {
    ...(follow ? { query: { follow: 1 } } : {}),
    headers: { Accept: 'text/plain' },
    ...(signal === undefined ? {} : { signal }),
  });
  let last = '\n';
  const hand = (text: string) => {
    if (text === '') return;
    last = text;
    onText(text);
  };
  if (response.body !== null) {
    const decoder = new TextDecoder('utf-8');
    for await (const chunk of response.body) hand(decoder.decode(chunk, { stream: true }));
    hand(decoder.decode());
  }
  return { endsWithNewline: last.endsWith('\n') };
}

/**
 * Follows the log of each build in turn until it ends (the first live, the later ones from
 * their start, whole), while a build waits in the queue saying why; several builds each get
 * a `==> context (id)` header. Returns the builds as they ended.
 * @throws ServerError (exit 3) when the server cannot be reached or answers an error
 */
export async function followBuilds(ctx: CliContext, builds: readonly BuildViewAnswer[], reporter = createProgressReporter(ctx)): Promise<BuildViewAnswer[]> {
  const ended: BuildViewAnswer[] = [];
  for (const build of builds) {
    if (builds.length > 1) ctx.out.write(`${ctx.out.style.bold(`==> ${build.context} (${build.id})`)}\n`);
    const stop = new AbortController();
    // says why the build waits while its log has nothing yet
    const watch = (async () => {
      let now = build;
      while (now.state === 'queued' && !stop.signal.aborted) {
        await reporter.queued([now]);
        now = await getBuild(ctx.api, build.id, QUEUED_POLL_SECONDS, stop.signal);
      }
    })().catch((err: unknown) => {
      if (!stop.signal.aborted) throw err;
    });
    let streamed: { endsWithNewline: boolean };
    try {
      streamed = await streamLog(ctx.api, build.id, true, (text) => ctx.out.write(text));
    } finally {
      stop.abort();
      await watch;
    }
    if (!streamed.endsWithNewline) ctx.out.write('\n');
    // the log closes after the build's end is stored: this answers at once
    const last = await getBuild(ctx.api, build.id, LONG_POLL_SECONDS);
    reporter.state(last);
    ended.push(last);
  }
  return ended;
}
