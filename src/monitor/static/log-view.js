// @ts-check
// The log view of the build page: a window of at most `maxLines` lines over a log of any
// size, fetched by line number from /api/builds/:id/log/lines, of which only the rows on
// screen exist in the DOM. Lines are drawn with DOM nodes and textContent only (see ansi.js).

import { parseAnsi, safeHref } from './ansi.js';

/**
 * @typedef {object} LogLines what /api/builds/:id/log/lines answers
 * @property {number} start 1-based number of the first line
 * @property {string[]} lines
 * @property {number} total lines in the log when it was read
 * @property {number} startOffset
 * @property {number} endOffset
 * @property {number} size bytes in the log when it was read
 * @property {boolean} complete
 */

/** @typedef {{ start: number, count: number } | { tail: number }} LineQuery */

/**
 * Draws one log line (ANSI colours, OSC 8 links) into DOM nodes. Link targets that are not
 * absolute http(s) URLs stay plain text.
 * @param {string} line
 * @returns {DocumentFragment}
 */
export function renderLineText(line) {
  const fragment = document.createDocumentFragment();
  for (const segment of parseAnsi(line)) {
    const href = safeHref(segment.href);
    const styled = segment.classes.length > 0 || segment.color !== null || segment.background !== null;
    if (!styled && segment.href === null) {
      fragment.append(document.createTextNode(segment.text));
      continue;
    }
    /** @type {HTMLElement} */
    let node;
    if (href !== null) {
      const a = document.createElement('a');
      a.href = href;
      a.rel = 'noopener noreferrer nofollow';
      a.target = '_blank';
      node = a;
    } else {
      node = document.createElement('span');
      if (segment.href !== null) node.classList.add('a-link-blocked');
    }
    if (segment.classes.length > 0) node.classList.add(...segment.classes);
    if (segment.color !== null) node.style.color = segment.color;
    if (segment.background !== null) node.style.backgroundColor = segment.background;
    node.textContent = segment.text;
    fragment.append(node);
  }
  return fragment;
}

export class LogView {
  /**
   * @param {HTMLElement} root the scrolling element
   * @param {object} options
   * @param {(query: LineQuery) => Promise<LogLines>} options.fetchLines
   * @param {number} [options.maxLines] lines kept in the window (default 20000)
   * @param {number} [options.chunk] lines fetched at a time (default 1000)
   * @param {(text: string) => void} [options.onStatus]
   * @param {(follow: boolean) => void} [options.onFollowChange]
   */
  constructor(root, options) {
    this.root = root;
    this.fetchLines = options.fetchLines;
    this.maxLines = options.maxLines ?? 20000;
    this.chunk = options.chunk ?? 1000;
    this.onStatus = options.onStatus ?? (() => undefined);
    this.onFollowChange = options.onFollowChange ?? (() => undefined);
    /** @type {string[]} */
    this.lines = [];
    /** line number of lines[0] */
    this.first = 1;
    /** lines the log has, as far as we know */
    this.total = 0;
    this.follow = true;
    /** @type {number | null} */
    this.highlight = null;
    this.loading = false;
    this.frame = 0;
    this.spacer = document.createElement('div');
    this.spacer.className = 'log-spacer';
    this.rows = document.createElement('div');
    this.rows.className = 'log-rows';
    this.spacer.append(this.rows);
    root.replaceChildren(this.spacer);
    this.rowHeight = this.measureRow();
    root.addEventListener('scroll', () => this.onScroll(), { passive: true });
    window.addEventListener('resize', () => this.schedule());
  }

  /** Height of one row in pixels, from the stylesheet. */
  measureRow() {
    const probe = document.createElement('div');
    probe.className = 'line';
    probe.textContent = 'x';
    this.rows.append(probe);
    const height = probe.getBoundingClientRect().height || 18;
    probe.remove();
    return height;
  }

  /** One past the last line number in the window. */
  get windowEnd() {
    return this.first + this.lines.length;
  }

  /** True when the window holds the last line known. */
  get atTail() {
    return this.windowEnd > this.total;
  }

  /** @param {boolean} follow */
  setFollow(follow) {
    if (this.follow === follow) return;
    this.follow = follow;
    this.onFollowChange(follow);
    if (follow) void this.showEnd();
  }

  /**
   * Replaces the window with `answer`.
   * @param {LogLines} answer
   */
  replace(answer) {
    this.lines = answer.lines.slice();
    this.first = answer.start;
    this.total = Math.max(answer.total, this.windowEnd - 1);
  }

  /**
   * Shows the end of the log.
   * @returns {Promise<LogLines>} the answer it was drawn from
   */
  async showTail() {
    const answer = await this.fetchLines({ tail: this.chunk });
    this.replace(answer);
    this.scrollToBottom();
    return answer;
  }

  /** Goes to the end: the window already there, or the tail fetched again. */
  async showEnd() {
    if (!this.atTail) await this.showTail();
    else this.scrollToBottom();
  }

  /** Goes to the first line. */
  async showStart() {
    this.setFollow(false);
    if (this.first > 1) this.replace(await this.fetchLines({ start: 1, count: this.chunk }));
    this.root.scrollTop = 0;
    this.schedule();
  }

  /**
   * Shows line `n` highlighted near the top of the view, fetching a window around it when needed.
   * @param {number} n
   * @returns {Promise<LogLines | null>} the answer fetched, or null when the window had it
   */
  async showLine(n) {
    this.follow = false;
    this.onFollowChange(false);
    this.highlight = n;
    /** @type {LogLines | null} */
    let answer = null;
    if (n < this.first || n >= this.windowEnd) {
      answer = await this.fetchLines({ start: Math.max(1, n - Math.floor(this.chunk / 2)), count: this.chunk });
      this.replace(answer);
    }
    const index = Math.min(Math.max(0, n - this.first), Math.max(0, this.lines.length - 1));
    this.render();
    this.root.scrollTop = Math.max(0, index * this.rowHeight - this.root.clientHeight / 3);
    this.schedule();
    return answer;
  }

  /**
   * Adds lines that arrived live; `start` is the number of the first one. Lines the window
   * already holds are skipped; lines beyond a window that does not reach the end are only counted.
   * @param {number} start
   * @param {string[]} lines
   */
  append(start, lines) {
    this.total = Math.max(this.total, start + lines.length - 1);
    const end = this.windowEnd;
    if (start <= end && start + lines.length > end) {
      for (const line of lines.slice(end - start)) this.lines.push(line);
      const over = this.lines.length - this.maxLines;
      if (over > 0) {
        this.lines.splice(0, over);
        this.first += over;
        if (!this.follow) this.root.scrollTop = Math.max(0, this.root.scrollTop - over * this.rowHeight);
      }
    }
    if (this.follow && this.atTail) this.scrollToBottom();
    else this.schedule();
  }

  scrollToBottom() {
    this.render();
    this.root.scrollTop = this.root.scrollHeight;
    this.schedule();
  }

  /** Fetches the lines before the window. */
  async loadBefore() {
    if (this.loading || this.first <= 1) return;
    this.loading = true;
    try {
      const count = Math.min(this.chunk, this.first - 1);
      const answer = await this.fetchLines({ start: this.first - count, count });
      if (answer.start + answer.lines.length !== this.first) {
        this.replace(answer);
      } else {
        this.lines = answer.lines.concat(this.lines);
        this.first = answer.start;
        this.root.scrollTop += answer.lines.length * this.rowHeight;
        if (this.lines.length > this.maxLines) this.lines.length = this.maxLines;
      }
      this.total = Math.max(this.total, answer.total);
    } finally {
      this.loading = false;
      this.schedule();
    }
  }

  /** Fetches the lines after the window. */
  async loadAfter() {
    if (this.loading || this.atTail) return;
    this.loading = true;
    try {
      const answer = await this.fetchLines({ start: this.windowEnd, count: this.chunk });
      this.total = Math.max(this.total, answer.total);
      if (answer.start === this.windowEnd) {
        for (const line of answer.lines) this.lines.push(line);
        const over = this.lines.length - this.maxLines;
        if (over > 0) {
          this.lines.splice(0, over);
          this.first += over;
          this.root.scrollTop = Math.max(0, this.root.scrollTop - over * this.rowHeight);
        }
      }
    } finally {
      this.loading = false;
      this.schedule();
    }
  }

  onScroll() {
    const { scrollTop, clientHeight, scrollHeight } = this.root;
    const nearBottom = scrollTop + clientHeight >= scrollHeight - this.rowHeight * 2;
    if (this.follow && !nearBottom) {
      this.follow = false;
      this.onFollowChange(false);
    } else if (!this.follow && nearBottom && this.atTail && this.highlight === null) {
      this.follow = true;
      this.onFollowChange(true);
    }
    if (scrollTop < this.rowHeight * 200 && this.first > 1) void this.loadBefore();
    if (scrollTop + clientHeight > scrollHeight - this.rowHeight * 200 && !this.atTail) void this.loadAfter();
    this.schedule();
  }

  schedule() {
    if (this.frame !== 0) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  /** Draws the rows on screen (and a few around them); nothing else is in the DOM. */
  render() {
    const height = this.lines.length * this.rowHeight;
    this.spacer.style.height = `${height}px`;
    const overscan = 20;
    const top = Math.max(0, Math.floor(this.root.scrollTop / this.rowHeight) - overscan);
    const bottom = Math.min(this.lines.length, Math.ceil((this.root.scrollTop + this.root.clientHeight) / this.rowHeight) + overscan);
    this.rows.style.transform = `translateY(${top * this.rowHeight}px)`;
    const rows = [];
    for (let i = top; i < bottom; i++) {
      const n = this.first + i;
      const row = document.createElement('div');
      row.className = n === this.highlight ? 'line hl' : 'line';
      row.id = `L${n}`;
      const number = document.createElement('a');
      number.className = 'ln';
      number.href = `#L${n}`;
      number.textContent = String(n);
      const text = document.createElement('span');
      text.className = 'lt';
      text.append(renderLineText(this.lines[i] ?? ''));
      row.append(number, text);
      rows.push(row);
    }
    this.rows.replaceChildren(...rows);
    const last = this.windowEnd - 1;
    this.onStatus(
      this.lines.length === 0 ? 'no lines yet' : `lines ${this.first}–${last} of ${this.total}${this.first > 1 ? ' · scroll up for earlier ones' : ''}`,
    );
  }
}
