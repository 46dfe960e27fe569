import type { Build, BuildState } from '../builds/build.js';
import { isTerminal } from '../builds/build.js';
import { escapeHtml } from './build-page.js';

/** What a status badge says: a build state, or `unknown` when the branch has no build. */
export type BadgeStatus = BuildState | 'unknown';

const COLOURS: Record<BadgeStatus, string> = {
  success: '#2e7d32',
  failure: '#c62828',
  error: '#e65100',
  cancelled: '#616161',
  running: '#1565c0',
  queued: '#1565c0',
  unknown: '#757575',
};

/** Worst first: the state a branch shows when its builds disagree. */
const SEVERITY: readonly BuildState[] = ['error', 'failure', 'cancelled', 'success'];

/**
 * The status of a branch from its builds (newest first): per definition the newest finished
 * build, the worst of those wins; with nothing finished, `running` or `queued` when something
 * is, else `unknown`.
 */
export function toBadgeStatus(builds: readonly Build[]): BadgeStatus {
  const newest = new Map<string, BuildState>();
  for (const build of builds) {
    if (isTerminal(build.state) && !newest.has(build.definition)) newest.set(build.definition, build.state);
  }
  const finished = [...newest.values()];
  for (const state of SEVERITY) if (finished.includes(state)) return state;
  if (builds.some((b) => b.state === 'running')) return 'running';
  if (builds.some((b) => b.state === 'queued')) return 'queued';
  return 'unknown';
}

/** Approximate width in pixels of `text` in 11 px Verdana (what shields-style badges use). */
function textWidth(text: string): number {
  let width = 0;
  for (const ch of text) width += /[ilj.,:;|!'I1]/.test(ch) ? 3.5 : /[mwMW@]/.test(ch) ? 10 : /[A-Z]/.test(ch) ? 8 : 7;
  return Math.ceil(width);
}

/** A flat two-part SVG badge: `label` on grey, `status` on its colour; every text escaped. */
export function toBadgeSvg(label: string, status: BadgeStatus): string {
  const left = textWidth(label) + 12;
  const right = textWidth(status) + 12;
  const total = left + right;
  const l = escapeHtml(label);
  const s = escapeHtml(status);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${total}" height="20" role="img" aria-label="${l}: ${s}">
<title>${l}: ${s}</title>
<rect width="${left}" height="20" fill="#555"/>
<rect x="${left}" width="${right}" height="20" fill="${COLOURS[status]}"/>
<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">
<text x="${left / 2}" y="14">${l}</text>
<text x="${left + right / 2}" y="14">${s}</text>
</g>
</svg>
`;
}
