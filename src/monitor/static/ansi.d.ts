// Types of ansi.js (a browser module served as is; tests import it from node).

/** A run of log text with one style, ready to become one DOM node. */
export interface Segment {
  /** the characters, free of control characters except tab */
  text: string;
  /** CSS classes: a-b, a-d, a-i, a-u, a-s, a-inv, a-fg-N, a-bg-N (N 0–15) */
  classes: string[];
  /** a CSS rgb() for 256-colour and true-colour foregrounds, else null */
  color: string | null;
  /** the same for backgrounds */
  background: string | null;
  /** the OSC 8 link target as written (not checked: see safeHref) */
  href: string | null;
}

/** Parses one log line (no newline) into styled segments; styles reset at each line. */
export function parseAnsi(line: string): Segment[];

/** An OSC 8 link target when it is an absolute http(s) URL, else null. */
export function safeHref(href: string | null): string | null;

/** The text a line shows, without escape sequences or control characters. */
export function toPlainText(line: string): string;
