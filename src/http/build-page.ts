import type { Context } from 'koa';
import { toPlainText } from '../monitor/static/ansi.js';
import type { BuildView } from './build-view.js';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

/**
 * The Content-Security-Policy of every page: scripts, styles and connections only from this
 * server (no inline script or style at all), and Trusted Types enforced, so no string can
 * ever reach an HTML sink such as `innerHTML` (https://w3c.github.io/trusted-types/dist/spec/).
 */
export const PAGE_CSP =
  "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/** Sends `html` as a page: the CSP above, no sniffing, no framing, not cached. */
export function sendPage(ctx: Context, html: string): void {
  ctx.set('Content-Security-Policy', PAGE_CSP);
  ctx.set('X-Content-Type-Options', 'nosniff');
  ctx.set('Referrer-Policy', 'same-origin');
  ctx.set('Cache-Control', 'no-cache');
  ctx.type = 'text/html; charset=utf-8';
  ctx.body = html;
}

/** The head and top bar every page shares; `scripts` are module scripts under /assets or /socket.io. */
export function renderLayout(input: { title: string; bodyClass: string; scripts: string[]; meta?: Record<string, string>; body: string }): string {
  const meta = Object.entries(input.meta ?? {})
    .map(([name, content]) => `<meta name="${escapeHtml(name)}" content="${escapeHtml(content)}">`)
    .join('\n');
  const scripts = input.scripts.map((src) => `<script type="module" src="${escapeHtml(src)}"></script>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
${meta}
<title>${escapeHtml(input.title)}</title>
<link rel="icon" href="/assets/favicon.svg">
<link rel="stylesheet" href="/assets/app.css">
${scripts}
</head><body class="${escapeHtml(input.bodyClass)}">
<header class="topbar"><a class="brand" href="/monitor">autobuilder</a><nav><a href="/monitor">monitor</a></nav></header>
${input.body}
</body></html>
`;
}

const time = (iso: string | null) =>
  iso === null ? '' : `<time datetime="${escapeHtml(iso)}">${escapeHtml(iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z'))}</time>`;

/** Seconds between two ISO times as `1m 05s`, or '' when either is missing. */
export function toDuration(from: string | null, to: string | null): string {
  if (from === null || to === null) return '';
  const seconds = Math.max(0, Math.round((Date.parse(to) - Date.parse(from)) / 1000));
  return seconds < 60 ? `${seconds}s` : `${Math.floor(seconds / 60)}m ${String(seconds % 60).padStart(2, '0')}s`;
}

/** A build's parameters as `NAME=value` chips, or `none`. */
const paramsHtml = (params: Readonly<Record<string, string>>): string => {
  const entries = Object.entries(params);
  if (entries.length === 0) return '<span class="muted">none</span>';
  return entries.map(([name, value]) => `<code class="param">${escapeHtml(name)}=${escapeHtml(value)}</code>`).join(' ');
};

const buildLink = (id: string | null) => (id === null ? '' : `<a href="/builds/${escapeHtml(id)}">${escapeHtml(id)}</a>`);

/**
 * Renders the page of one build (the commit status `target_url`): its facts and artifacts as
 * escaped HTML, and an empty log view that /assets/build-page.js fills from the log API and
 * keeps live over server-sent events. `tail` (the last lines, first line number `start`)
 * is shown, as escaped plain text, to browsers without JavaScript only.
 */
export function renderBuildPage(build: BuildView, tail: { start: number; lines: readonly string[] } = { start: 1, lines: [] }): string {
  const row = (label: string, field: string, html: string) => `<dt>${escapeHtml(label)}</dt><dd data-field="${field}">${html}</dd>`;
  const flags = [build.cached ? 'cached' : '', build.coalesced ? 'coalesced' : '', build.incremental ? 'incremental' : ''].filter(Boolean).join(', ') || 'none';
  const artifacts =
    build.artifacts.length === 0
      ? '<li class="muted">none</li>'
      : build.artifacts
          .map(
            (a) =>
              `<li><a href="${escapeHtml(a.url)}" download="${escapeHtml(a.name)}">${escapeHtml(a.name)}</a> <code>sha256:${escapeHtml(a.digest)}</code> <span class="muted">${a.size} bytes</span></li>`,
          )
          .join('');
  const body = `<main class="build" data-build-id="${escapeHtml(build.id)}">
<section class="facts">
<h1><span class="state state-${escapeHtml(build.state)}" data-field="state">${escapeHtml(build.state)}</span> <span>${escapeHtml(build.repo)}</span> <span class="muted">${escapeHtml(build.definition)}</span></h1>
<p class="description" data-field="description">${escapeHtml(build.description ?? '')}</p>
<dl>
${row('build', 'id', `<code>${escapeHtml(build.id)}</code>`)}
${row('repository', 'repo', escapeHtml(build.repo))}
${row('ref', 'ref', `<code>${escapeHtml(build.ref)}</code>`)}
${row('commit', 'sha', `<code>${escapeHtml(build.sha)}</code>`)}
${row('definition', 'definition', escapeHtml(build.definition))}
${row('parameters', 'params', paramsHtml(build.params))}
<dt data-label="worker"${build.worker === null ? ' hidden' : ''}>worker</dt><dd data-field="worker"${build.worker === null ? ' hidden' : ''}>${escapeHtml(build.worker ?? '')}</dd>
${row('exit code', 'exitCode', build.exitCode === null ? '' : String(build.exitCode))}
${row('queued', 'queuedAt', time(build.queuedAt))}
${row('started', 'startedAt', time(build.startedAt))}
${row('finished', 'finishedAt', time(build.finishedAt))}
${row('duration', 'duration', escapeHtml(toDuration(build.startedAt, build.finishedAt)))}
${row('reuse', 'flags', escapeHtml(flags))}
${row('from build', 'parentBuildId', buildLink(build.parentBuildId))}
${row('result of', 'sourceBuildId', buildLink(build.sourceBuildId))}
${row('cache key', 'cacheKey', build.cacheKey === null ? '' : `<code>${escapeHtml(build.cacheKey)}</code>`)}
${row('config commit', 'configSha', build.configSha === null ? '' : `<code>${escapeHtml(build.configSha)}</code>`)}
</dl>
<h2>Artifacts</h2>
<ul class="artifacts" data-field="artifacts">${artifacts}</ul>
</section>
<section class="log">
<div class="log-toolbar">
<h2>Log</h2>
<label><input type="checkbox" id="follow" checked> follow</label>
<button type="button" id="log-top">top</button>
<button type="button" id="log-end">end</button>
<span id="log-status" class="muted"></span>
<a href="/api/builds/${escapeHtml(build.id)}/log">raw</a>
</div>
<div id="log" class="log-view" tabindex="0" role="log" data-log-url="/api/builds/${escapeHtml(build.id)}/log"></div>
<noscript><p>The live log view needs JavaScript; here are the last lines (<a href="/api/builds/${escapeHtml(build.id)}/log">the raw log</a> has all of them).</p>
<pre class="log-plain">${tail.lines.map((line, i) => `<span id="L${tail.start + i}">${escapeHtml(toPlainText(line))}</span>`).join('\n')}</pre></noscript>
</section>
</main>`;
  return renderLayout({
    title: `${build.state} · ${build.repo} ${build.definition} · autobuilder`,
    bodyClass: 'page-build',
    scripts: ['/assets/build-page.js'],
    body,
  });
}

/**
 * Renders the /monitor page shell; /assets/monitor.js fills it over socket.io. `socketToken`
 * (set when the pages need credentials) is handed to the socket handshake through a meta tag.
 */
export function renderMonitorPage(input: { socketToken: string | null }): string {
  const body = `<main class="monitor">
<section class="status-line"><span id="connection" class="conn conn-connecting">connecting</span> <span id="config-status" class="muted"></span></section>
<section id="config-errors" class="config-errors" role="alert" hidden></section>
<section><h2>Running <span id="running-count" class="count">0</span></h2><div id="running" class="running"></div></section>
<section><h2>Queued <span id="queued-count" class="count">0</span></h2>
<table class="builds"><thead><tr><th>state</th><th>repository</th><th>ref</th><th>build</th><th>queued</th><th>waiting for</th></tr></thead><tbody id="queued"></tbody></table></section>
<section id="workers-section" hidden><h2>Workers <span id="workers-count" class="count" title="live">0</span></h2>
<table class="builds workers"><thead><tr><th>worker</th><th>host</th><th>labels</th><th>state</th><th>builds</th><th>last heartbeat</th><th>version</th></tr></thead><tbody id="workers"></tbody></table></section>
<section><h2>History</h2>
<form id="filters" class="filters">
<label>repository <input name="repo" placeholder="owner/name" autocomplete="off"></label>
<label>branch <input name="branch" placeholder="main" autocomplete="off"></label>
<label>state <select name="state"><option value="">any</option><option>queued</option><option>running</option><option>success</option><option>failure</option><option>error</option><option>cancelled</option></select></label>
</form>
<table class="builds"><thead><tr><th>state</th><th>repository</th><th>ref</th><th>build</th><th>commit</th><th>queued</th><th>duration</th><th>reuse</th><th>outcome</th></tr></thead><tbody id="history"></tbody></table></section>
</main>`;
  return renderLayout({
    title: 'monitor · autobuilder',
    bodyClass: 'page-monitor',
    scripts: ['/assets/monitor.js'],
    meta: input.socketToken === null ? {} : { 'autobuilder-socket-token': input.socketToken },
    body,
  });
}
