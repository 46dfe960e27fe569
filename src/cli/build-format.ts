import type { BuildViewAnswer, QueueAnswer } from './api-schemas.js';
import type { Styles } from './cli-context.js';

/** A build's state, coloured: green success, red failure and error, yellow cancelled, plain while it waits or runs. */
export function toStateText(state: BuildViewAnswer['state'], style: Styles): string {
  switch (state) {
    case 'success':
      return style.green(state);
    case 'failure':
    case 'error':
      return style.red(state);
    case 'cancelled':
      return style.yellow(state);
    case 'queued':
    case 'running':
      return state;
    default: {
      const unreachable: never = state;
      return unreachable;
    }
  }
}

/** A short ref for people: `main` for `refs/heads/main`, `v1.2` for `refs/tags/v1.2`, other refs whole. */
export function toShortRef(ref: string): string {
  return ref.replace(/^refs\/(heads|tags)\//, '');
}

/** One line per build: id, state, repository, ref, short sha, context, and the description when there is one. */
export function toBuildLine(build: BuildViewAnswer, style: Styles): string {
  const reuse = build.cached ? ' (cached)' : build.coalesced ? ` (joined ${build.sourceBuildId ?? 'an identical build'})` : '';
  const description = build.description === null || build.description === '' ? '' : ` ${style.dim(`"${build.description}"`)}`;
  // padded before colouring: escape codes have no width
  const state = `${toStateText(build.state, style)}${' '.repeat(Math.max(0, 9 - build.state.length))}`;
  return `${build.id}  ${state}  ${build.repo} ${toShortRef(build.ref)} ${build.sha.slice(0, 10)}  ${build.context}${reuse}${description}`;
}

/** Why a queued build waits, from `GET /api/queue`: its place in line and the server's reason; null when the queue does not hold it. */
export function toWaitingText(buildId: string, queue: QueueAnswer): string | null {
  const waiting = queue.waiting.find((w) => w.buildId === buildId);
  if (waiting !== undefined) {
    // the server's reason already names a full disk or a stopping server
    const place = waiting.position === null ? '' : `position ${waiting.position} of ${queue.waiting.filter((w) => w.position !== null).length}, `;
    return `${place}${waiting.reason}${waiting.backlogNote === null ? '' : ` (${waiting.backlogNote})`}`;
  }
  if (!queue.deciding.includes(buildId)) return null;
  let text = 'being decided (commit tree, image, cache)';
  if (queue.blocked !== null) text += `; nothing starts now: ${queue.blocked}`;
  if (queue.stopping) text += '; the server is stopping';
  return text;
}

/** The fields of one build, a `key: value` line each (`status ID`). */
export function toBuildDetails(build: BuildViewAnswer, style: Styles, waiting: string | null): string {
  const rows: [string, string][] = [
    ['build', build.id],
    ['state', `${toStateText(build.state, style)}${build.exitCode === null ? '' : ` (exit code ${build.exitCode})`}`],
    ['description', build.description ?? ''],
    ['repository', build.repo],
    ['ref', build.ref],
    ['commit', build.sha],
    ['context', build.context],
  ];
  if (waiting !== null) rows.push(['waits', waiting]);
  if (build.cached) rows.push(['cached', `reuses build ${build.sourceBuildId ?? '?'}`]);
  if (build.coalesced) rows.push(['joined', `build ${build.sourceBuildId ?? '?'}`]);
  rows.push(['queued', build.queuedAt], ['started', build.startedAt ?? '-'], ['finished', build.finishedAt ?? '-']);
  for (const artifact of build.artifacts) rows.push(['artifact', `${artifact.name} ${artifact.size} bytes sha256:${artifact.digest}`]);
  rows.push(['page', build.pageUrl], ['log', build.logUrl]);
  return rows.map(([key, value]) => `${style.bold(`${key}:`.padEnd(13))}${value}`).join('\n');
}
