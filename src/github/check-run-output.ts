import type { Build, BuildState } from '../builds/build.js';
import type { DefinitionProblem } from '../config-repo/definition-error.js';
import type { CheckRunConclusion, CheckRunState, CheckRunStatus, StoredAnnotation } from '../store/check-run-outbox.js';
import { stripAnsi } from './annotations.js';

/**
 * Most characters of a check run's `output.summary` and of its `output.text` each
 * (https://docs.github.com/rest/checks/runs#create-a-check-run: "Maximum length: 65535
 * characters"). Counted here in UTF-8 bytes, which are never fewer than characters.
 */
export const MAX_OUTPUT_BYTES = 65_535;

/** Most characters of a title shown here (GitHub caps an annotation's title at 255). */
export const MAX_TITLE = 255;

/** Most characters of one value (a ref, a description, a file name) quoted in a summary. */
const MAX_VALUE = 300;

/** Most characters of one log line in a check run's text; a longer one is cut with `…`. */
const MAX_LOG_LINE = 2000;

/**
 * The action button every build's check run carries: GitHub sends `check_run.requested_action`
 * with this identifier when it is clicked, and the build is run again without the cache.
 * GitHub caps label and identifier at 20 characters, description at 40
 * (https://docs.github.com/rest/checks/runs#check-runs-and-requested-actions).
 */
export const REBUILD_ACTION = Object.freeze({
  label: 'Rebuild (no cache)',
  description: 'Build again without the build cache',
  identifier: 'rebuild-no-cache',
});

/** The check run status of a build state: `queued`, `in_progress` while running, else `completed`. */
export function toCheckRunStatus(state: BuildState): CheckRunStatus {
  switch (state) {
    case 'queued':
      return 'queued';
    case 'running':
      return 'in_progress';
    case 'success':
    case 'failure':
    case 'error':
    case 'cancelled':
      return 'completed';
    default: {
      const unreachable: never = state;
      return unreachable;
    }
  }
}

/**
 * Descriptions `toStopEnd` (src/builds/build-execution.ts) gives a build stopped by its
 * timeout or its output timeout: such an `error` is `timed_out`.
 */
const TIMED_OUT = /^(timed out after \d+ s|no output for \d+ s)$/;

/**
 * The conclusion of a build that has ended: `success`, `failure` (the build's own fault),
 * `cancelled`, `timed_out` (stopped by its timeout or output timeout), and `action_required`
 * for any other `error`, a fault on autobuilder's side (image missing, git fetch failed, the
 * server restarted): someone has to act, and the details URL (the build page) says what
 * happened. Null while the build is queued or running.
 */
export function toConclusion(build: Pick<Build, 'state' | 'description'>): CheckRunConclusion | null {
  switch (build.state) {
    case 'queued':
    case 'running':
      return null;
    case 'success':
      return 'success';
    case 'failure':
      return 'failure';
    case 'cancelled':
      return 'cancelled';
    case 'error':
      return TIMED_OUT.test(build.description ?? '') ? 'timed_out' : 'action_required';
    default: {
      const unreachable: never = build.state;
      return unreachable;
    }
  }
}

/**
 * `text` without terminal escape sequences and control characters (tab kept), for GitHub's
 * pages; linear in the text whatever it holds ({@link stripAnsi}).
 */
export function toPlainText(text: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what it removes
  return stripAnsi(text).replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, '');
}

/** Cuts `text` to at most `max` characters (UTF-16 code units, never inside a pair), marking the cut with `…`. */
export function toClipped(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = Math.max(0, max - 1);
  // a high surrogate at the cut would be half a character
  if (end > 0 && /[\uD800-\uDBFF]/.test(text.charAt(end - 1))) end--;
  return `${text.slice(0, end)}…`;
}

/**
 * `value` as a Markdown code span, one line, at most `max` characters inside: nothing in it
 * is Markdown, HTML, a link or a mention, whatever it holds (a build's output and a branch
 * name are attacker input). The fence is one backtick longer than the longest run inside
 * (https://spec.commonmark.org/0.31.2/#code-spans).
 */
export function toCodeSpan(value: string, max = MAX_VALUE): string {
  const flat = toClipped(toPlainText(value).replace(/\s+/g, ' ').trim(), max);
  if (flat === '') return '` `';
  const longest = Math.max(0, ...(flat.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longest + 1);
  const pad = flat.startsWith('`') || flat.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${flat}${pad}${fence}`;
}

/** One line of plain text for a title: control characters and line breaks gone, at most {@link MAX_TITLE} characters. */
export function toTitle(text: string): string {
  return toClipped(toPlainText(text).replace(/\s+/g, ' ').trim(), MAX_TITLE);
}

const bytes = (text: string): number => Buffer.byteLength(text, 'utf8');

/** Cuts `text` to at most `maxBytes` UTF-8 bytes, on a character boundary, marking a cut with `…`. */
export function toBytesClipped(text: string, maxBytes: number): string {
  if (bytes(text) <= maxBytes) return text;
  let used = bytes('…');
  let end = 0;
  for (const char of text) {
    used += bytes(char);
    if (used > maxBytes) break;
    end += char.length;
  }
  return `${text.slice(0, end)}…`;
}

/**
 * The last lines of a build log as a fenced Markdown code block of at most `maxBytes`
 * (UTF-8): escape sequences and control characters removed, each line at most 2,000
 * characters, as many of the last lines as fit. The fence is longer than any run of
 * backticks in the lines, so no line closes it (https://spec.commonmark.org/0.31.2/#fenced-code-blocks).
 * Returns the block and how many lines it holds.
 */
export function toLogBlock(lines: readonly string[], maxBytes: number): { block: string; shown: number } {
  // cut before the escapes go, so a long line costs no more than a short one
  const clean = lines.map((line) => toClipped(toPlainText(line.slice(0, 4 * MAX_LOG_LINE)), MAX_LOG_LINE));
  const longest = Math.max(0, ...clean.flatMap((line) => (line.match(/`+/g) ?? []).map((run) => run.length)));
  const fence = '`'.repeat(Math.max(3, longest + 1));
  let budget = maxBytes - bytes(`${fence}text\n\n${fence}`);
  const kept: string[] = [];
  for (let i = clean.length - 1; i >= 0 && budget > 0; i--) {
    const line = clean[i] as string;
    const cost = bytes(line) + 1;
    if (cost > budget) break;
    kept.push(line);
    budget -= cost;
  }
  kept.reverse();
  return { block: `${fence}text\n${kept.join('\n')}\n${fence}`, shown: kept.length };
}

/** The tail of a build's log as read from it: the lines, and how many the log has in all. */
export interface LogTail {
  lines: readonly string[];
  total: number;
}

/** What a build's check run output says beside the build itself. */
export interface BuildOutputContext {
  /** the server's public URL, for the build page, log and artifact links */
  publicUrl: string;
  /** the end of the build's log; null when it has none (yet) */
  logTail: LogTail | null;
  /** annotations found in the log and sent with the check run, and those beyond the cap */
  annotations: { count: number; dropped: number };
  /** for tests: the budget of the text in bytes (default {@link MAX_OUTPUT_BYTES}) */
  maxTextBytes?: number;
}

const STATE_WORDS: { readonly [S in BuildState]: string } = {
  queued: 'Queued',
  running: 'Running',
  success: 'Success',
  failure: 'Failure',
  error: 'Error',
  cancelled: 'Cancelled',
};

/** Seconds between two ISO 8601 times, as `12.3 s` (or `2 min 5 s`), or null when one is missing. */
export function toDuration(from: string | null, to: string | null): string | null {
  if (from === null || to === null) return null;
  const ms = Date.parse(to) - Date.parse(from);
  if (!Number.isFinite(ms) || ms < 0) return null;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds - minutes * 60)} s`;
}

/** Why a build that ran was not answered from the cache, in words. */
function toCacheMissText(build: Build, link: (id: string) => string): string | null {
  const miss = build.cacheMiss;
  if (miss === null) return null;
  if (miss.forced) return 'not used: the build was forced (a rebuild without the cache)';
  if (miss.comparedWith === null) return 'miss: no earlier build of this definition';
  if (miss.differs.length === 0) return `miss: the inputs of build ${link(miss.comparedWith)} are the same, but it did not succeed`;
  return `miss: ${miss.differs.map((input) => toCodeSpan(input)).join(', ')} differ from build ${link(miss.comparedWith)}`;
}

/**
 * A build's check run output: `title` (state and description), a Markdown `summary` (state,
 * duration, incremental or from which build it was cached or coalesced, why it missed the
 * cache, artifacts with digest and download link, worker, annotations) and a Markdown `text`
 * with the tail of its log in a code block, each within GitHub's limits
 * ({@link MAX_OUTPUT_BYTES}). Every value taken from the build, its log or its push is quoted
 * as code ({@link toCodeSpan}, {@link toLogBlock}): none of it can add Markdown, HTML,
 * links or mentions.
 */
export function toBuildOutput(build: Build, context: BuildOutputContext): NonNullable<CheckRunState['output']> {
  const base = context.publicUrl.replace(/\/+$/, '');
  const link = (id: string) => `[${toCodeSpan(id)}](${base}/builds/${encodeURIComponent(id)})`;
  const word = STATE_WORDS[build.state];
  // "Queued: all 2 slots busy" says its state already
  const description = build.description === null || build.description.trim() === '' ? null : build.description;
  const saysState = description !== null && description.toLowerCase().startsWith(word.toLowerCase());
  const title = toTitle(description === null ? word : saysState ? description : `${word}: ${description}`);

  const lines: string[] = [`**${word}**${description === null || description === word ? '' : ` · ${toCodeSpan(description)}`}`, ''];
  const item = (label: string, text: string) => lines.push(`- **${label}:** ${text}`);
  item('Build', `${link(build.id)} of ${toCodeSpan(build.repo)} ${toCodeSpan(build.ref)} at ${toCodeSpan(build.sha)}`);
  const ran = toDuration(build.startedAt, build.finishedAt);
  const waited = toDuration(build.queuedAt, build.startedAt ?? build.finishedAt);
  if (ran !== null) item('Duration', `${ran}${waited === null ? '' : ` (queued ${waited})`}`);
  else if (build.state === 'running' && build.startedAt !== null) item('Started', toCodeSpan(build.startedAt));
  if (build.cached && build.sourceBuildId !== null) item('Cache', `hit: the same inputs as build ${link(build.sourceBuildId)}, whose result this is`);
  else if (build.coalesced && build.sourceBuildId !== null) item('Coalesced', `with build ${link(build.sourceBuildId)}, which had the same inputs`);
  else {
    const miss = toCacheMissText(build, link);
    if (miss !== null) item('Cache', miss);
  }
  if (build.startedAt !== null && !build.cached) {
    item('Workspace', build.incremental && build.parentBuildId !== null ? `incremental, a snapshot of build ${link(build.parentBuildId)}` : 'fresh');
  }
  if (build.startedAt !== null) item('Worker', build.worker === null ? 'the autobuilder server' : toCodeSpan(build.worker));
  for (const artifact of build.artifacts) {
    const url = `${base}/api/artifacts/${artifact.digest}`;
    item('Artifact', `${toCodeSpan(artifact.name)} (${artifact.size} bytes), sha256 ${toCodeSpan(artifact.digest)}: [download](${url})`);
  }
  const { count, dropped } = context.annotations;
  if (count + dropped > 0) item('Annotations', `${count} from the build log${dropped > 0 ? `; ${dropped} more found, beyond the cap, not shown` : ''}`);
  lines.push('', `[Build page](${base}/builds/${build.id}) · [Full log](${base}/api/builds/${build.id}/log)`);
  const summary = toBytesClipped(lines.join('\n'), MAX_OUTPUT_BYTES);

  const tail = context.logTail;
  let text: string | null = null;
  if (tail !== null && tail.lines.length > 0) {
    const maxBytes = context.maxTextBytes ?? MAX_OUTPUT_BYTES;
    const head = (shown: number) => `The last ${shown} of ${tail.total} lines of the build log ([full log](${base}/api/builds/${build.id}/log)):\n\n`;
    const { block, shown } = toLogBlock(tail.lines, maxBytes - bytes(head(tail.total)));
    text = `${head(shown)}${block}`;
  }
  return { title, summary, text };
}

/** What GitHub should show for `build` now: status, conclusion, times and output. */
export function toBuildCheckRunState(build: Build, context: BuildOutputContext): CheckRunState {
  const status = toCheckRunStatus(build.state);
  return {
    status,
    conclusion: toConclusion(build),
    startedAt: build.startedAt,
    completedAt: status === 'completed' ? (build.finishedAt ?? new Date().toISOString()) : null,
    output: toBuildOutput(build, context),
  };
}

/**
 * The annotations of a refused config repository revision: one `failure` at each problem's
 * file and line (line 1 for a problem of a whole file); problems of no file are left out.
 */
export function toProblemAnnotations(problems: readonly DefinitionProblem[]): StoredAnnotation[] {
  return problems
    .filter((p) => p.file !== '')
    .map((p) => ({
      path: p.file,
      start_line: p.line ?? 1,
      end_line: p.line ?? 1,
      annotation_level: 'failure',
      message: toClipped(p.key === '' ? p.message : `${p.key}: ${p.message}`, 4096),
      title: toTitle(p.key === '' ? 'autobuilder definition' : `autobuilder definition: ${p.key}`),
    }));
}

/**
 * The output of the `autobuilder/config` check run on a config repository commit: refused
 * with its problems (each as `file:line`, key and message, quoted as code), or activated with
 * how many definition files it has.
 */
export function toConfigOutput(
  outcome: { activated: true; files: number } | { activated: false; problems: readonly DefinitionProblem[] },
  apiUrl: string,
): NonNullable<CheckRunState['output']> {
  if (outcome.activated) {
    const files = `${outcome.files} definition file${outcome.files === 1 ? '' : 's'}`;
    return {
      title: `Active: ${files}`,
      summary: `**Active** · this revision of the config repository is in use: ${files}.\n\n[Config status](${apiUrl})`,
      text: null,
    };
  }
  const { problems } = outcome;
  const count = `${problems.length} problem${problems.length === 1 ? '' : 's'}`;
  const lines = [
    `**Refused** · this revision of the config repository has ${count}; the last good revision stays active.`,
    '',
    ...problems.map(
      (p) => `- ${toCodeSpan(`${p.file}${p.line === null ? '' : `:${p.line}`}`)} ${p.key === '' ? '' : `${toCodeSpan(p.key)} `}${toCodeSpan(p.message, 1000)}`,
    ),
    '',
    `[Config status](${apiUrl})`,
  ];
  return { title: `Refused: ${count}`, summary: toBytesClipped(lines.join('\n'), MAX_OUTPUT_BYTES), text: null };
}
