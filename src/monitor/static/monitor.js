// @ts-check
// The /monitor page: a snapshot over socket.io on every (re)connection and filter change,
// then deltas (build, log, queue, config, workers) applied in the order they come. Everything is drawn with
// DOM nodes and textContent.

import { io } from '/socket.io/socket.io.esm.min.js';
import { renderLineText } from './log-view.js';

/**
 * @typedef {object} BuildView
 * @property {string} id
 * @property {string} repo
 * @property {string} ref
 * @property {string} sha
 * @property {string} definition
 * @property {string} state
 * @property {string | null} description
 * @property {boolean} cached
 * @property {boolean} coalesced
 * @property {boolean} incremental
 * @property {string | null} configSha
 * @property {string} queuedAt
 * @property {string | null} startedAt
 * @property {string | null} finishedAt
 * @property {string | null} worker the build worker that ran it (bullmq dispatch)
 * @property {Record<string, string>} [params] the build's parameters by name
 * @property {string} pageUrl
 */

/** @typedef {{ lines: string[], end: number }} LogTail */

/**
 * @typedef {object} MonitorSnapshot what the server sends on `watch` (src/monitor/protocol.ts)
 * @property {number} seq
 * @property {string} at server time, ISO 8601
 * @property {BuildView[]} running
 * @property {BuildView[]} queued
 * @property {Record<string, string>} waiting
 * @property {BuildView[]} recent
 * @property {Record<string, LogTail>} tails
 * @property {ConfigState} config
 * @property {WorkerState[] | null} workers null when builds run on the server (local mode)
 */

/**
 * @typedef {object} WorkerState a build worker (MonitorWorker in src/monitor/protocol.ts)
 * @property {string} id
 * @property {string} host
 * @property {string[]} labels
 * @property {number} capacity
 * @property {string[]} running
 * @property {string} version
 * @property {boolean} live
 * @property {boolean} draining
 * @property {string} lastHeartbeatAt
 */

/**
 * @typedef {object} ConfigState the config repository (MonitorConfigState in src/monitor/protocol.ts)
 * @property {string | null} sha
 * @property {string} source
 * @property {number} concurrency
 * @property {string | null} activatedAt
 * @property {number} files
 * @property {{ sha: string | null, at: string, problems: { file: string, line: number | null, key: string, message: string }[], more: number } | null} errors
 */

const TAIL_LINES = 15;
const HISTORY_LENGTH = 50;

/** @type {{ repo?: string, ref?: string, state?: string }} */
let watch = {};
/** @type {Map<string, BuildView>} */
const builds = new Map();
/** @type {string[]} history, newest first */
let recent = [];
/** @type {Map<string, LogTail>} */
const tails = new Map();
/** @type {Record<string, string>} */
let waiting = {};
/** @type {ConfigState | null} */
let config = null;
/** @type {WorkerState[] | null} */
let workers = null;
/** ms the page's clock is ahead of the server's (from the last message with the server's time) */
let clockSkew = 0;
let lastSeq = 0;

/** @param {string} id @returns {HTMLElement} */
function byId(id) {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`the page has no #${id}`);
  return element;
}

/**
 * @param {string} tag
 * @param {{ className?: string, text?: string }} [props]
 * @param {(Node | string)[]} [children]
 */
function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  if (props.className !== undefined) node.className = props.className;
  if (props.text !== undefined) node.textContent = props.text;
  node.append(...children);
  return node;
}

/** @param {string} iso */
function ago(iso) {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
  return iso.slice(0, 10);
}

/** @param {string | null} from @param {string | null} to */
function duration(from, to) {
  if (from === null) return '';
  const seconds = Math.max(0, Math.round(((to === null ? Date.now() : Date.parse(to)) - Date.parse(from)) / 1000));
  return seconds < 60 ? `${seconds}s` : `${Math.floor(seconds / 60)}m ${String(seconds % 60).padStart(2, '0')}s`;
}

/** @param {string} ref */
const shortRef = (ref) => ref.replace(/^refs\/(heads|tags)\//, '');

/** @param {BuildView} build */
function stateBadge(build) {
  return el('span', { className: `state state-${build.state}`, text: build.state });
}

/** @param {BuildView} build */
function buildLink(build) {
  const a = /** @type {HTMLAnchorElement} */ (el('a', { text: build.definition }));
  a.href = `/builds/${encodeURIComponent(build.id)}`;
  return a;
}

/** The build's definition as a link to its page, its parameters, and the worker it ran on when it has one. @param {BuildView} build */
function buildCell(build) {
  const cell = el('span', {}, [buildLink(build)]);
  for (const [name, value] of Object.entries(build.params ?? {})) cell.append(' ', el('code', { className: 'param', text: `${name}=${value}` }));
  if (build.worker !== null) cell.append(' ', el('span', { className: 'worker muted', text: `on ${build.worker}` }));
  return cell;
}

/** @param {BuildView} build */
function matchesHistory(build) {
  return (
    (watch.repo === undefined || build.repo === watch.repo) &&
    (watch.ref === undefined || build.ref === watch.ref) &&
    (watch.state === undefined || build.state === watch.state)
  );
}

/** @param {BuildView} build @param {(Node | string)[]} cells */
function row(build, cells) {
  const tr = el('tr');
  tr.dataset['buildId'] = build.id;
  tr.dataset['state'] = build.state;
  tr.append(...cells.map((c) => el('td', {}, [c])));
  return tr;
}

function renderRunning() {
  const running = [...builds.values()].filter((b) => b.state === 'running').sort((a, b) => (a.startedAt ?? '').localeCompare(b.startedAt ?? ''));
  byId('running-count').textContent = String(running.length);
  byId('running').replaceChildren(
    ...running.map((build) => {
      const card = el('article', { className: 'card' });
      card.dataset['buildId'] = build.id;
      card.dataset['state'] = build.state;
      const tail = tails.get(build.id)?.lines ?? [];
      const pre = el(
        'pre',
        { className: 'tail' },
        tail.map((line) => el('div', { className: 'tail-line' }, [renderLineText(line)])),
      );
      card.append(
        el('header', {}, [
          stateBadge(build),
          ' ',
          el('strong', { text: build.repo }),
          ' ',
          buildCell(build),
          ' ',
          el('code', { text: shortRef(build.ref) }),
          ' ',
          el('code', { className: 'muted', text: build.sha.slice(0, 10) }),
          ' ',
          el('span', { className: 'muted', text: `running ${duration(build.startedAt, null)}` }),
        ]),
        pre,
      );
      return card;
    }),
  );
  for (const pre of byId('running').querySelectorAll('pre.tail')) pre.scrollTop = pre.scrollHeight;
}

function renderQueued() {
  const queued = [...builds.values()].filter((b) => b.state === 'queued').sort((a, b) => a.queuedAt.localeCompare(b.queuedAt));
  byId('queued-count').textContent = String(queued.length);
  byId('queued').replaceChildren(
    ...queued.map((build) => row(build, [stateBadge(build), build.repo, shortRef(build.ref), buildCell(build), ago(build.queuedAt), waiting[build.id] ?? ''])),
  );
}

function renderHistory() {
  byId('history').replaceChildren(
    ...recent
      .map((id) => builds.get(id))
      .filter((b) => b !== undefined)
      .map((build) => {
        const reuse = [build.cached ? 'cached' : '', build.coalesced ? 'coalesced' : '', build.incremental ? 'incremental' : ''].filter(Boolean).join(', ');
        return row(build, [
          stateBadge(build),
          build.repo,
          shortRef(build.ref),
          buildCell(build),
          el('code', { text: build.sha.slice(0, 10) }),
          ago(build.queuedAt),
          duration(build.startedAt, build.finishedAt),
          reuse,
          el('span', { className: 'muted', text: build.description ?? '' }),
        ]);
      }),
  );
}

function renderConfig() {
  if (config === null) return;
  byId('config-status').textContent =
    `definitions: ${config.source}${config.sha === null ? '' : ` at ${config.sha.slice(0, 12)}`} (${config.files} file${config.files === 1 ? '' : 's'}) · ${config.concurrency} at once`;
  const errors = config.errors;
  const box = byId('config-errors');
  box.hidden = errors === null;
  if (errors === null) return box.replaceChildren();
  const title = `config revision ${errors.sha === null ? '' : `${errors.sha.slice(0, 12)} `}refused ${ago(errors.at)}; the definitions above stay active`;
  box.replaceChildren(
    el('strong', { text: title }),
    el(
      'ul',
      {},
      errors.problems.map((p) => el('li', { text: `${p.file}${p.line === null ? '' : `:${p.line}`}: ${p.key === '' ? '' : `${p.key}: `}${p.message}` })),
    ),
    ...(errors.more > 0 ? [el('span', { className: 'muted', text: `and ${errors.more} more (GET /api/config)` })] : []),
  );
}

/** @param {WorkerState} worker */
function workerBadge(worker) {
  const [state, text] = !worker.live ? ['offline', 'offline'] : worker.draining ? ['draining', 'draining'] : ['live', 'live'];
  return el('span', { className: `state worker-${state}`, text });
}

function renderWorkers() {
  const section = byId('workers-section');
  section.hidden = workers === null;
  if (workers === null) return;
  byId('workers-count').textContent = String(workers.filter((w) => w.live).length);
  byId('workers').replaceChildren(
    ...workers.map((worker) => {
      const tr = el('tr');
      tr.dataset['workerId'] = worker.id;
      tr.dataset['live'] = String(worker.live);
      const running = el('span', { text: `${worker.running.length}/${worker.capacity}` });
      running.title = worker.running.join(' ');
      const cells = [
        el('strong', { text: worker.id }),
        worker.host,
        el(
          'span',
          {},
          worker.labels.flatMap((label, i) => [...(i === 0 ? [] : [' ']), el('code', { className: 'label', text: label })]),
        ),
        workerBadge(worker),
        running,
        ago(new Date(Date.parse(worker.lastHeartbeatAt) + clockSkew).toISOString()),
        el('code', { className: 'muted', text: worker.version }),
      ];
      tr.append(...cells.map((c) => el('td', {}, [c])));
      return tr;
    }),
  );
}

let frame = 0;
function schedule() {
  if (frame !== 0) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    renderRunning();
    renderQueued();
    renderHistory();
    renderConfig();
    renderWorkers();
  });
}

/** @param {string} state @param {string} text */
function showConnection(state, text) {
  const node = byId('connection');
  node.className = `conn conn-${state}`;
  node.textContent = text;
}

const token = document.querySelector('meta[name="autobuilder-socket-token"]')?.getAttribute('content') ?? null;
const socket = io({ path: '/socket.io', auth: token === null ? {} : { token } });

socket.on('connect', () => {
  showConnection('live', 'live');
  socket.emit('watch', watch);
});
socket.on('disconnect', () => showConnection('down', 'reconnecting'));
socket.on('connect_error', (/** @type {Error} */ err) => showConnection('down', `not connected: ${err.message}`));

socket.on('snapshot', (/** @type {MonitorSnapshot} */ snapshot) => {
  lastSeq = snapshot.seq;
  builds.clear();
  tails.clear();
  for (const build of [...snapshot.running, ...snapshot.queued, ...snapshot.recent]) builds.set(build.id, build);
  recent = snapshot.recent.map((b) => b.id);
  for (const [id, tail] of Object.entries(snapshot.tails)) tails.set(id, tail);
  waiting = snapshot.waiting;
  config = snapshot.config;
  workers = snapshot.workers;
  clockSkew = Date.now() - Date.parse(snapshot.at);
  schedule();
});

socket.on('config', (/** @type {{ seq: number, config: ConfigState }} */ delta) => {
  if (stale(delta)) return;
  config = delta.config;
  schedule();
});

/** True for a delta older than what the page shows (sent before the last snapshot). @param {{ seq: number }} delta */
function stale(delta) {
  if (delta.seq <= lastSeq) return true;
  lastSeq = delta.seq;
  return false;
}

socket.on('build', (/** @type {{ seq: number, event: string, build: BuildView }} */ delta) => {
  if (stale(delta)) return;
  const { build } = delta;
  builds.set(build.id, build);
  const listed = recent.indexOf(build.id);
  if (matchesHistory(build)) {
    if (listed === -1) recent = [build.id, ...recent].slice(0, HISTORY_LENGTH);
  } else if (listed !== -1) {
    recent.splice(listed, 1);
  }
  if (delta.event === 'finished') tails.delete(build.id);
  schedule();
});

socket.on('log', (/** @type {{ seq: number, buildId: string, start: number, end: number, lines: string[], skipped: number }} */ delta) => {
  if (stale(delta)) return;
  const tail = tails.get(delta.buildId) ?? { lines: [], end: 0 };
  // a batch the snapshot already had (it ends where the snapshot's tail ends, or before)
  if (delta.end <= tail.end) return;
  const lines = delta.skipped > 0 ? [`… ${delta.skipped} lines not shown here`, ...delta.lines] : delta.lines;
  tail.lines = tail.lines.concat(lines).slice(-TAIL_LINES);
  tail.end = delta.end;
  const state = builds.get(delta.buildId)?.state;
  // a build's first line comes just before it is queued, its last just after it ended
  if (state === undefined || state === 'queued' || state === 'running') tails.set(delta.buildId, tail);
  schedule();
});

socket.on('workers', (/** @type {{ seq: number, at: string, workers: WorkerState[] }} */ delta) => {
  if (stale(delta)) return;
  workers = delta.workers;
  clockSkew = Date.now() - Date.parse(delta.at);
  schedule();
});

socket.on('queue', (/** @type {{ seq: number, waiting: Record<string, string> }} */ delta) => {
  if (stale(delta)) return;
  waiting = delta.waiting;
  schedule();
});

const filters = /** @type {HTMLFormElement} */ (byId('filters'));
let filterTimer = 0;
filters.addEventListener('submit', (event) => event.preventDefault());
filters.addEventListener('input', () => {
  clearTimeout(filterTimer);
  filterTimer = window.setTimeout(() => {
    const data = new FormData(filters);
    const value = (/** @type {string} */ name) => {
      const entry = data.get(name);
      return typeof entry === 'string' ? entry.trim() : '';
    };
    /** @type {{ repo?: string, ref?: string, state?: string }} */
    const next = {};
    if (value('repo') !== '') next.repo = value('repo');
    if (value('branch') !== '') next.ref = `refs/heads/${value('branch')}`;
    if (value('state') !== '') next.state = value('state');
    watch = next;
    socket.emit('watch', watch);
  }, 250);
});

// elapsed times move on
setInterval(schedule, 1000);
