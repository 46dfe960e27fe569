// @ts-check
// ANSI escape sequences → styled text segments, for the build page and the monitor.
//
// Log bytes never become markup: this module only produces plain data ({ text, classes,
// colours, href }); log-view.js turns it into DOM nodes with textContent and classList. Only
// SGR (colours and text attributes, `ESC [ … m`) and OSC 8 hyperlinks are understood; every
// other escape sequence (cursor movement, titles, …) and control character is dropped.
// Styles reset at the start of every line, so any line can be drawn on its own (the log view
// only draws the lines on screen).

/**
 * @typedef {object} Segment
 * @property {string} text the characters, free of control characters except tab
 * @property {string[]} classes CSS classes: a-b, a-d, a-i, a-u, a-s, a-inv, a-fg-N, a-bg-N (N 0–15)
 * @property {string | null} color a CSS rgb() for 256-colour and true-colour foregrounds, else null
 * @property {string | null} background the same for backgrounds
 * @property {string | null} href the OSC 8 link target, as written (not checked: see safeHref)
 */

/** @typedef {{ bold: boolean, dim: boolean, italic: boolean, underline: boolean, strike: boolean, inverse: boolean, fg: number | string | null, bg: number | string | null }} Style */

/** @returns {Style} */
const plain = () => ({ bold: false, dim: false, italic: false, underline: false, strike: false, inverse: false, fg: null, bg: null });

/** The xterm 256-colour palette entry `n` (16–255) as rgb(). @param {number} n */
function xterm256(n) {
  if (n < 232) {
    const i = n - 16;
    const level = (/** @type {number} */ v) => (v === 0 ? 0 : 55 + v * 40);
    return `rgb(${level(Math.floor(i / 36))}, ${level(Math.floor(i / 6) % 6)}, ${level(i % 6)})`;
  }
  const grey = 8 + (n - 232) * 10;
  return `rgb(${grey}, ${grey}, ${grey})`;
}

/** A byte 0–255, else null. @param {number | undefined} v */
const byte = (v) => (v !== undefined && Number.isInteger(v) && v >= 0 && v <= 255 ? v : null);

/**
 * Reads an extended colour (`38;5;n` or `38;2;r;g;b`) from `params` at `i` (just after 38/48).
 * @param {number[]} params
 * @param {number} i
 * @returns {{ colour: number | string | null, next: number }}
 */
function extendedColour(params, i) {
  if (params[i] === 5) {
    const n = byte(params[i + 1]);
    return { colour: n === null ? null : n < 16 ? n : xterm256(n), next: i + 2 };
  }
  if (params[i] === 2) {
    const r = byte(params[i + 1]);
    const g = byte(params[i + 2]);
    const b = byte(params[i + 3]);
    return { colour: r === null || g === null || b === null ? null : `rgb(${r}, ${g}, ${b})`, next: i + 4 };
  }
  return { colour: null, next: params.length };
}

/**
 * Applies one SGR parameter list to `style`.
 * @param {Style} style
 * @param {number[]} params
 */
function applySgr(style, params) {
  if (params.length === 0) params = [0];
  for (let i = 0; i < params.length; i++) {
    const p = /** @type {number} */ (params[i]);
    if (p === 0) Object.assign(style, plain());
    else if (p === 1) style.bold = true;
    else if (p === 2) style.dim = true;
    else if (p === 3) style.italic = true;
    else if (p === 4) style.underline = true;
    else if (p === 7) style.inverse = true;
    else if (p === 9) style.strike = true;
    else if (p === 21 || p === 22) style.bold = style.dim = false;
    else if (p === 23) style.italic = false;
    else if (p === 24) style.underline = false;
    else if (p === 27) style.inverse = false;
    else if (p === 29) style.strike = false;
    else if (p >= 30 && p <= 37) style.fg = p - 30;
    else if (p === 39) style.fg = null;
    else if (p >= 40 && p <= 47) style.bg = p - 40;
    else if (p === 49) style.bg = null;
    else if (p >= 90 && p <= 97) style.fg = p - 90 + 8;
    else if (p >= 100 && p <= 107) style.bg = p - 100 + 8;
    else if (p === 38 || p === 48) {
      const { colour, next } = extendedColour(params, i + 1);
      if (p === 38) style.fg = colour;
      else style.bg = colour;
      i = next - 1;
    }
  }
}

/**
 * @param {string} text
 * @param {Style} style
 * @param {string | null} href
 * @returns {Segment}
 */
function toSegment(text, style, href) {
  const fg = style.inverse ? style.bg : style.fg;
  const bg = style.inverse ? style.fg : style.bg;
  const classes = [];
  if (style.bold) classes.push('a-b');
  if (style.dim) classes.push('a-d');
  if (style.italic) classes.push('a-i');
  if (style.underline) classes.push('a-u');
  if (style.strike) classes.push('a-s');
  if (style.inverse && fg === null && bg === null) classes.push('a-inv');
  if (typeof fg === 'number') classes.push(`a-fg-${fg}`);
  if (typeof bg === 'number') classes.push(`a-bg-${bg}`);
  return { text, classes, color: typeof fg === 'string' ? fg : null, background: typeof bg === 'string' ? bg : null, href };
}

// CSI: ESC [ params intermediates final; OSC: ESC ] … (BEL | ESC \); other two-character escapes.
// oxlint-disable-next-line no-control-regex -- escape sequences are made of control characters
const ESCAPE = /\x1b\[([0-?]*)([ -/]*)([@-~])|\x1b\]([^\x07\x1b]*)(?:\x07|\x1b\\|$)|\x1b[ -~]?|\x9b[0-?]*[ -/]*[@-~]/g;
// C0 and C1 controls except tab; DEL
// oxlint-disable-next-line no-control-regex -- the control characters to remove
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/g;

/**
 * Parses one log line into styled segments. A carriage return keeps what a terminal would
 * show last (the text after it); an OSC 8 link (`ESC ]8;;URI ESC \ text ESC ]8;; ESC \`)
 * becomes segments with `href`.
 * @param {string} line one line, without its newline
 * @returns {Segment[]}
 */
export function parseAnsi(line) {
  const cr = line.lastIndexOf('\r', line.length - 2);
  if (cr !== -1) line = line.slice(cr + 1);
  /** @type {Segment[]} */
  const segments = [];
  const style = plain();
  /** @type {string | null} */
  let href = null;
  let last = 0;
  const pushText = (/** @type {string} */ raw) => {
    const text = raw.replace(CONTROL, '');
    if (text === '') return;
    const previous = segments.at(-1);
    const next = toSegment(text, style, href);
    if (
      previous &&
      previous.href === next.href &&
      previous.color === next.color &&
      previous.background === next.background &&
      previous.classes.join(' ') === next.classes.join(' ')
    ) {
      previous.text += text;
    } else {
      segments.push(next);
    }
  };
  ESCAPE.lastIndex = 0;
  for (let m = ESCAPE.exec(line); m !== null; m = ESCAPE.exec(line)) {
    pushText(line.slice(last, m.index));
    last = ESCAPE.lastIndex;
    if (m[3] === 'm' && m[2] === '' && /^[\d;:]*$/.test(m[1] ?? '')) {
      const params = (m[1] ?? '')
        .split(/[;:]/)
        .map((p) => (p === '' ? 0 : Number(p)))
        .filter((p) => Number.isFinite(p));
      applySgr(style, params);
    } else if (m[4] !== undefined) {
      const osc = m[4];
      if (osc.startsWith('8;')) {
        const uri = osc.slice(osc.indexOf(';', 2) + 1);
        href = osc.indexOf(';', 2) === -1 || uri === '' ? null : uri;
      }
    }
  }
  pushText(line.slice(last));
  return segments;
}

/**
 * The link target of an OSC 8 link when it is safe to follow (http or https, absolute), else
 * null: `javascript:`, `data:` and anything else stay plain text.
 * @param {string | null} href
 * @returns {string | null}
 */
export function safeHref(href) {
  if (href === null) return null;
  try {
    const url = new URL(href);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

/**
 * Strips every escape sequence and control character: the text a line shows.
 * @param {string} line
 * @returns {string}
 */
export function toPlainText(line) {
  return parseAnsi(line)
    .map((s) => s.text)
    .join('');
}
