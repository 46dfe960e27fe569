import type { Build } from '../builds/build.js';
import { isTerminal } from '../builds/build.js';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

// ANSI escape sequences (CSI and OSC, e.g. colours and OSC-8 links) are dropped from the
// plain page; log bytes only ever become escaped text.
const ANSI = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)/g;

/**
 * Renders the plain HTML page of one build: its facts, artifacts and log. Every value is
 * escaped; the page reloads itself every 2 s until the build has ended.
 */
export function renderBuildPage(build: Build, log: string, artifactUrl: (digest: string) => string): string {
  const row = (k: string, v: string) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`;
  const artifacts = build.artifacts
    .map((a) => `<li><a href="${escapeHtml(artifactUrl(a.digest))}">${escapeHtml(a.name)}</a> <code>sha256:${escapeHtml(a.digest)}</code> (${a.size} bytes)</li>`)
    .join('');
  const lines = log
    .replace(ANSI, '')
    .split('\n')
    .map((line, i) => `<span id="L${i + 1}">${escapeHtml(line)}</span>`)
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
${isTerminal(build.state) ? '' : '<meta http-equiv="refresh" content="2">'}
<title>${escapeHtml(`${build.state} · ${build.repo} ${build.definition} · autobuilder`)}</title>
<style>body{font:14px system-ui,sans-serif;margin:1.5rem}th{text-align:left;padding-right:1rem}pre{background:#111;color:#ddd;padding:1rem;overflow:auto}.state{font-weight:bold}</style>
</head><body>
<h1>Build ${escapeHtml(build.id)} <span class="state">${escapeHtml(build.state)}</span></h1>
<table>
${row('repository', build.repo)}${row('ref', build.ref)}${row('commit', build.sha)}${row('definition', build.definition)}
${row('description', build.description ?? '')}${row('exit code', build.exitCode === null ? '' : String(build.exitCode))}
${row('incremental', build.incremental ? `yes (from ${build.parentBuildId ?? '?'})` : 'no')}
${row('queued', build.queuedAt)}${row('started', build.startedAt ?? '')}${row('finished', build.finishedAt ?? '')}
</table>
<h2>Artifacts</h2><ul>${artifacts || '<li>none</li>'}</ul>
<h2>Log</h2><pre>${lines}</pre>
</body></html>
`;
}
