// @ts-check
// The build page: its facts kept live, and the log view fed from the log API. The log comes
// in over server-sent events from the byte offset where the first fetch ended; the browser
// resumes a dropped stream with Last-Event-ID, so no line is lost or shown twice.

import { LogView } from './log-view.js';

/**
 * @typedef {object} BuildView the build as /api/builds/:id shows it
 * @property {string} id
 * @property {string} repo
 * @property {string} definition
 * @property {string} state
 * @property {string | null} description
 * @property {number | null} exitCode
 * @property {boolean} cached
 * @property {boolean} coalesced
 * @property {boolean} incremental
 * @property {string | null} parentBuildId
 * @property {string | null} sourceBuildId
 * @property {string | null} cacheKey
 * @property {string | null} configSha
 * @property {string | null} worker the build worker that ran it (bullmq dispatch)
 * @property {string} queuedAt
 * @property {string | null} startedAt
 * @property {string | null} finishedAt
 * @property {{ name: string, digest: string, size: number, url: string }[]} artifacts
 */

const TERMINAL = new Set(['success', 'failure', 'error', 'cancelled']);

/** @param {string} id @returns {HTMLElement} */
function byId(id) {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`the page has no #${id}`);
  return element;
}

/** @param {string} name @returns {HTMLElement | null} */
const field = (name) => document.querySelector(`[data-field="${name}"]`);

/** @param {string | null} iso */
function timeNode(iso) {
  if (iso === null) return document.createTextNode('');
  const time = document.createElement('time');
  time.dateTime = iso;
  time.textContent = iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  return time;
}

/** @param {string | null} from @param {string | null} to */
function duration(from, to) {
  if (from === null || to === null) return '';
  const seconds = Math.max(0, Math.round((Date.parse(to) - Date.parse(from)) / 1000));
  return seconds < 60 ? `${seconds}s` : `${Math.floor(seconds / 60)}m ${String(seconds % 60).padStart(2, '0')}s`;
}

/** @param {string | null} id */
function buildLink(id) {
  if (id === null) return document.createTextNode('');
  const a = document.createElement('a');
  a.href = `/builds/${encodeURIComponent(id)}`;
  a.textContent = id;
  return a;
}

/** @param {string | null} text */
function code(text) {
  if (text === null) return document.createTextNode('');
  const c = document.createElement('code');
  c.textContent = text;
  return c;
}

/**
 * Puts a new version of the build on the page (every value as text).
 * @param {BuildView} build
 */
function showBuild(build) {
  const set = (/** @type {string} */ name, /** @type {Node} */ node) => field(name)?.replaceChildren(node);
  const state = field('state');
  if (state !== null) {
    state.textContent = build.state;
    state.className = `state state-${build.state}`;
  }
  document.title = `${build.state} · ${build.repo} ${build.definition} · autobuilder`;
  set('description', document.createTextNode(build.description ?? ''));
  set('exitCode', document.createTextNode(build.exitCode === null ? '' : String(build.exitCode)));
  set('startedAt', timeNode(build.startedAt));
  set('finishedAt', timeNode(build.finishedAt));
  set('duration', document.createTextNode(duration(build.startedAt, build.finishedAt)));
  const flags = [build.cached ? 'cached' : '', build.coalesced ? 'coalesced' : '', build.incremental ? 'incremental' : ''].filter(Boolean).join(', ');
  set('flags', document.createTextNode(flags || 'none'));
  set('parentBuildId', buildLink(build.parentBuildId));
  set('sourceBuildId', buildLink(build.sourceBuildId));
  set('cacheKey', code(build.cacheKey));
  set('configSha', code(build.configSha));
  set('worker', document.createTextNode(build.worker ?? ''));
  // the worker row is there only for a build that has one
  for (const node of document.querySelectorAll('[data-label="worker"], [data-field="worker"]'))
    if (node instanceof HTMLElement) node.hidden = build.worker === null;
  const list = field('artifacts');
  if (list !== null) {
    const items = build.artifacts.map((artifact) => {
      const li = document.createElement('li');
      const a = document.createElement('a');
      a.href = artifact.url;
      a.download = artifact.name;
      a.textContent = artifact.name;
      const size = document.createElement('span');
      size.className = 'muted';
      size.textContent = `${artifact.size} bytes`;
      li.append(a, ' ', code(`sha256:${artifact.digest}`), ' ', size);
      return li;
    });
    if (items.length === 0) {
      const none = document.createElement('li');
      none.className = 'muted';
      none.textContent = 'none';
      items.push(none);
    }
    list.replaceChildren(...items);
  }
}

async function main() {
  const root = byId('log');
  const logUrl = root.dataset['logUrl'] ?? '';
  const status = byId('log-status');
  const followBox = /** @type {HTMLInputElement} */ (byId('follow'));
  let liveText = '';
  let windowText = '';
  const showStatus = () => {
    status.textContent = [windowText, liveText].filter(Boolean).join(' · ');
  };
  const view = new LogView(root, {
    async fetchLines(query) {
      const params = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
      const response = await fetch(`${logUrl}/lines?${params}`, { headers: { accept: 'application/json' } });
      if (!response.ok) throw new Error(`the log API answered ${response.status}`);
      return response.json();
    },
    onStatus(text) {
      windowText = text;
      showStatus();
    },
    onFollowChange(follow) {
      followBox.checked = follow;
    },
  });
  followBox.addEventListener('change', () => view.setFollow(followBox.checked));
  byId('log-top').addEventListener('click', () => void view.showStart());
  byId('log-end').addEventListener('click', () => view.setFollow(true));

  const lineInHash = () => {
    const match = /^#L(\d+)$/.exec(location.hash);
    return match === null ? null : Number(match[1]);
  };
  window.addEventListener('hashchange', () => {
    const n = lineInHash();
    if (n !== null) void view.showLine(n);
  });

  const wanted = lineInHash();
  // a link to a line shows the log, not the facts above it
  if (wanted !== null) root.scrollIntoView({ block: 'start' });
  const first = wanted === null ? await view.showTail() : await view.showLine(wanted);
  const answer = first ?? (await view.fetchLines({ tail: 0 }));
  const pageState = field('state')?.textContent ?? '';
  if (answer.complete && TERMINAL.has(pageState)) {
    liveText = 'complete';
    showStatus();
    return;
  }
  // live from where the fetch ended: the lines numbered on from its total
  let next = answer.total + 1;
  const source = new EventSource(`${logUrl}?offset=${answer.size}`);
  liveText = 'connecting';
  showStatus();
  source.addEventListener('open', () => {
    liveText = 'live';
    showStatus();
  });
  source.addEventListener('log', (event) => {
    const lines = /** @type {string[]} */ (JSON.parse(event.data));
    view.append(next, lines);
    next += lines.length;
  });
  source.addEventListener('build', (event) => showBuild(JSON.parse(event.data)));
  source.addEventListener('end', () => {
    source.close();
    liveText = 'complete';
    showStatus();
  });
  source.addEventListener('error', () => {
    if (source.readyState !== EventSource.CLOSED) {
      liveText = 'reconnecting';
      showStatus();
    }
  });
}

main().catch((err) => {
  const status = document.getElementById('log-status');
  if (status !== null) status.textContent = `the log could not be loaded: ${err instanceof Error ? err.message : String(err)}`;
});
