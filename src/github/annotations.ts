import path from 'node:path';
import type { StoredAnnotation } from '../store/check-run-outbox.js';

/**
 * One check run annotation, as the Checks API takes it in `output.annotations`
 * (https://docs.github.com/en/rest/checks/runs#create-a-check-run). `path` is relative to the
 * repository root with `/` separators; lines and columns are 1-based; `start_column` and
 * `end_column` are given only when `start_line === end_line`, as GitHub requires.
 */
export type CheckAnnotation = StoredAnnotation;

/** Annotation levels of the Checks API. */
export type AnnotationLevel = CheckAnnotation['annotation_level'];

/** Annotations GitHub takes in one create or update request (its documented limit). */
export const MAX_ANNOTATIONS_PER_REQUEST = 50;
/** Characters of a message kept (GitHub allows 64 KB; a diagnostic needs far less). */
export const MAX_MESSAGE_CHARS = 1_000;
/** Characters of a title kept (GitHub allows 255). */
export const MAX_TITLE_CHARS = 100;
/** Characters of a log line looked at before colour codes are stripped. */
const MAX_RAW_LINE_CHARS = 8_192;
/** Characters of a line, without colour codes, that are matched. */
const MAX_LINE_CHARS = 4_096;

/**
 * Strips ANSI escape sequences (CSI `ESC [ … final`, OSC `ESC ] … BEL|ESC \`, and two-character
 * escapes) in one pass: the work is linear in the text, whatever it holds (a regular expression
 * for OSC strings rescans the text for each unterminated escape).
 */
export function stripAnsi(text: string): string {
  if (!text.includes('\u001b') && !text.includes('\u009b')) return text;
  let out = '';
  let index = 0;
  const length = text.length;
  while (index < length) {
    const code = text.charCodeAt(index);
    if (code !== 0x1b && code !== 0x9b) {
      const next = nextEscape(text, index);
      out += text.slice(index, next);
      index = next;
      continue;
    }
    // CSI: ESC [ or the 8-bit CSI, then parameter and intermediate bytes, then a final byte (ECMA-48 5.4)
    let cursor = code === 0x9b ? index + 1 : index + 2;
    const kind = code === 0x9b ? '[' : text[index + 1];
    if (kind === '[') {
      while (cursor < length) {
        const byte = text.charCodeAt(cursor);
        cursor++;
        if (byte >= 0x40 && byte <= 0x7e) break;
        if (byte < 0x20 || byte > 0x3f) break; // not a parameter or intermediate byte: the sequence is broken
      }
    } else if (kind === ']' || kind === 'P' || kind === '_' || kind === '^') {
      // OSC / DCS / APC / PM strings end at BEL or ST (ESC \)
      while (cursor < length) {
        const byte = text.charCodeAt(cursor);
        if (byte === 0x07) {
          cursor++;
          break;
        }
        if (byte === 0x1b && text[cursor + 1] === '\\') {
          cursor += 2;
          break;
        }
        cursor++;
      }
    }
    index = Math.min(cursor, length);
  }
  return out;
}

function nextEscape(text: string, from: number): number {
  const escape = text.indexOf('\u001b', from);
  const csi = text.indexOf('\u009b', from);
  if (escape === -1) return csi === -1 ? text.length : csi;
  return csi === -1 ? escape : Math.min(escape, csi);
}

/** A diagnostic read from one line, before its path is placed in the repository. */
export interface Diagnostic {
  file: string;
  line: number;
  column?: number;
  level: AnnotationLevel;
  message: string;
  title?: string;
}

// Every pattern is anchored at the line's start, its path is one bounded word that (but for
// tsc's) excludes the separator after it, and its numbers are bounded: a match attempt is linear
// in the line (no catastrophic backtracking). A path is a word without white space, so a line
// that only mentions a location in its text is not taken for a diagnostic.
/** gcc, clang: `path:line:col: error: message`, `path:line: warning: message` */
const COMPILER = /^([^\s:]{1,1024}):(\d{1,9}):(?:(\d{1,9}):)? ?(fatal error|error|warning|note|remark): ?(.*)$/;
/** tsc: `path(line,col): error TS2322: message` */
const TSC = /^(\S{1,1024}?)\((\d{1,9}),(\d{1,9})\): (error|warning|message) (TS\d{1,6}): ?(.*)$/;
/** tsc --pretty: `path:line:col - error TS2322: message` */
const TSC_PRETTY = /^([^\s:]{1,1024}):(\d{1,9}):(\d{1,9}) - (error|warning|message) (TS\d{1,6}): ?(.*)$/;
/** eslint unix: `path:line:col: message [Error/rule]` (the suffix is read without a pattern) */
const ESLINT_UNIX = /^([^\s:]{1,1024}):(\d{1,9}):(\d{1,9}): (.*)$/;
/** eslint compact: `path: line 1, col 5, Error - message (rule)` */
const ESLINT_COMPACT = /^([^\s:]{1,1024}): line (\d{1,9}), col (\d{1,9}), (Error|Warning|Info) - (.*)$/;

function toLevel(word: string): AnnotationLevel {
  switch (word.toLowerCase()) {
    case 'fatal error':
    case 'error':
      return 'failure';
    case 'warning':
      return 'warning';
    default:
      return 'notice';
  }
}

/** The text in a trailing `[…]` of `text` (gcc's `[-Wformat=]`, eslint's `[Error/semi]`), or undefined. */
function trailingBracket(text: string): { inner: string; before: string } | undefined {
  if (!text.endsWith(']')) return undefined;
  const open = text.lastIndexOf('[');
  if (open === -1) return undefined;
  return { inner: text.slice(open + 1, -1), before: text.slice(0, open).trimEnd() };
}

function withColumn(file: string, line: string, column: string | undefined, level: AnnotationLevel, message: string, title: string | undefined): Diagnostic {
  const diagnostic: Diagnostic = { file, line: Number(line), level, message };
  const col = column === undefined ? 0 : Number(column);
  if (col > 0) diagnostic.column = col;
  if (title !== undefined && title !== '') diagnostic.title = title;
  return diagnostic;
}

/**
 * Reads one diagnostic from one log line, or undefined when the line is none: gcc and clang
 * (`path:line[:col]: fatal error|error|warning|note|remark: message`), tsc (`path(line,col): error
 * TSnnnn: message` and its `--pretty` form `path:line:col - error TSnnnn: message`) and eslint's
 * `unix` (`path:line:col: message [Error/rule]`) and `compact` (`path: line N, col M, Error -
 * message (rule)`) formats. Colour codes are stripped first; the line is cut to a bounded length
 * before it is matched. Paths are returned as printed.
 */
export function parseDiagnosticLine(rawLine: string): Diagnostic | undefined {
  let line = rawLine.length > MAX_RAW_LINE_CHARS ? rawLine.slice(0, MAX_RAW_LINE_CHARS) : rawLine;
  if (!line.includes(':')) return undefined;
  line = stripAnsi(line);
  // a terminal shows what follows the last carriage return (progress output redraws a line)
  const carriageReturn = line.lastIndexOf('\r', line.length - 2);
  if (carriageReturn !== -1) line = line.slice(carriageReturn + 1);
  line = line.trim();
  if (line.length > MAX_LINE_CHARS) line = line.slice(0, MAX_LINE_CHARS);

  let match = COMPILER.exec(line);
  if (match !== null) {
    const [, file = '', lineNumber = '', column, level = '', message = ''] = match;
    const flag = trailingBracket(message);
    return withColumn(file, lineNumber, column, toLevel(level), message, flag?.inner.startsWith('-W') === true ? flag.inner : undefined);
  }
  match = TSC.exec(line) ?? TSC_PRETTY.exec(line);
  if (match !== null) {
    const [, file = '', lineNumber = '', column, level = '', code = '', message = ''] = match;
    return withColumn(file, lineNumber, column, toLevel(level), `${code}: ${message}`, code);
  }
  match = ESLINT_COMPACT.exec(line);
  if (match !== null) {
    const [, file = '', lineNumber = '', column, level = '', message = ''] = match;
    const ruleOpen = message.endsWith(')') ? message.lastIndexOf(' (') : -1;
    const rule = ruleOpen === -1 ? undefined : message.slice(ruleOpen + 2, -1);
    return withColumn(file, lineNumber, column, toLevel(level), ruleOpen === -1 ? message : message.slice(0, ruleOpen), rule);
  }
  match = ESLINT_UNIX.exec(line);
  if (match !== null) {
    const [, file = '', lineNumber = '', column, rest = ''] = match;
    const suffix = trailingBracket(rest);
    if (suffix === undefined) return undefined;
    const slash = suffix.inner.indexOf('/');
    const severity = slash === -1 ? suffix.inner : suffix.inner.slice(0, slash);
    if (severity !== 'Error' && severity !== 'Warning') return undefined;
    const rule = slash === -1 ? undefined : suffix.inner.slice(slash + 1);
    return withColumn(file, lineNumber, column, toLevel(severity), suffix.before, rule);
  }
  return undefined;
}

/**
 * The path of `file` relative to the repository root, or undefined when it is not inside the
 * repository: an absolute path must lie under `workspaceDir` (the repository root as the build
 * sees it, e.g. CONTAINER_WORKDIR); a relative path is taken as relative to the root, normalised,
 * and must not climb out of it (`../x`).
 */
export function toRepositoryPath(file: string, workspaceDir: string): string | undefined {
  if (file.includes('\0') || file.includes('\\')) return undefined;
  let relative = file;
  if (file.startsWith('/')) {
    const root = path.posix.normalize(workspaceDir).replace(/\/+$/, '');
    const normalised = path.posix.normalize(file);
    if (!normalised.startsWith(`${root}/`)) return undefined;
    relative = normalised.slice(root.length + 1);
  }
  const normalised = path.posix.normalize(relative);
  if (normalised === '.' || normalised === '..' || normalised.startsWith('../') || normalised.startsWith('/') || normalised.endsWith('/')) return undefined;
  return normalised;
}

function bound(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * Makes a check annotation of `line`, or undefined when the line holds no diagnostic or its
 * file lies outside the repository (see {@link parseDiagnosticLine} and {@link toRepositoryPath}).
 * The message is cut to {@link MAX_MESSAGE_CHARS}, the title to {@link MAX_TITLE_CHARS}.
 */
export function parseAnnotationLine(line: string, workspaceDir: string): CheckAnnotation | undefined {
  const diagnostic = parseDiagnosticLine(line);
  if (diagnostic === undefined) return undefined;
  const file = toRepositoryPath(diagnostic.file, workspaceDir);
  if (file === undefined) return undefined;
  // GitHub's lines are 1-based; a tool's line 0 means the file as a whole
  const lineNumber = Math.max(1, diagnostic.line);
  const annotation: CheckAnnotation = {
    path: file,
    start_line: lineNumber,
    end_line: lineNumber,
    annotation_level: diagnostic.level,
    message: bound(diagnostic.message === '' ? diagnostic.level : diagnostic.message, MAX_MESSAGE_CHARS),
  };
  if (diagnostic.column !== undefined && diagnostic.line >= 1) {
    annotation.start_column = diagnostic.column;
    annotation.end_column = diagnostic.column;
  }
  if (diagnostic.title !== undefined) annotation.title = bound(diagnostic.title, MAX_TITLE_CHARS);
  return annotation;
}

/**
 * Collects check annotations from a build's log lines as they are written. Bounded: at most
 * `maxAnnotations` are kept, in the order seen; a repeat of a kept one (same path, line, level
 * and message) is left out; diagnostics past the cap are counted in `dropped` (repeats among
 * them too, as they are no longer remembered). `add` takes one line (a text with newlines is
 * read line by line) and never throws.
 */
export interface AnnotationCollector {
  add(line: string): void;
  readonly annotations: readonly CheckAnnotation[];
  readonly dropped: number;
}

/**
 * Creates an {@link AnnotationCollector}. `workspaceDir` is the repository root as the build
 * sees it (CONTAINER_WORKDIR for a container build): absolute paths under it become relative,
 * others are ignored. `maxAnnotations` (≥ 0) caps what is kept.
 */
export function createAnnotationCollector(options: { workspaceDir: string; maxAnnotations: number }): AnnotationCollector {
  const { workspaceDir } = options;
  const maxAnnotations = Math.max(0, Math.floor(options.maxAnnotations));
  const annotations: CheckAnnotation[] = [];
  const seen = new Set<string>();
  let dropped = 0;

  function addOne(line: string): void {
    const annotation = parseAnnotationLine(line, workspaceDir);
    if (annotation === undefined) return;
    if (annotations.length >= maxAnnotations) {
      dropped++;
      return;
    }
    const key = `${annotation.path}\0${annotation.start_line}\0${annotation.annotation_level}\0${annotation.message}`;
    if (seen.has(key)) return;
    seen.add(key);
    annotations.push(annotation);
  }

  return {
    add(line: string): void {
      let start = 0;
      for (;;) {
        const end = line.indexOf('\n', start);
        addOne(end === -1 ? line.slice(start, start + MAX_RAW_LINE_CHARS) : line.slice(start, Math.min(end, start + MAX_RAW_LINE_CHARS)));
        if (end === -1) return;
        start = end + 1;
        if (start >= line.length) return;
      }
    },
    get annotations(): readonly CheckAnnotation[] {
      return annotations;
    },
    get dropped(): number {
      return dropped;
    },
  };
}

/**
 * Splits annotations into batches for successive Checks API requests: GitHub takes at most
 * {@link MAX_ANNOTATIONS_PER_REQUEST} per request and adds each batch to the run's annotations
 * (https://docs.github.com/en/rest/checks/runs#update-a-check-run). `size` is taken as an integer
 * between 1 and 50. No annotations give no batches.
 */
export function toAnnotationBatches(annotations: readonly CheckAnnotation[], size: number = MAX_ANNOTATIONS_PER_REQUEST): CheckAnnotation[][] {
  const batchSize = Math.min(MAX_ANNOTATIONS_PER_REQUEST, Math.max(1, Number.isFinite(size) ? Math.floor(size) : MAX_ANNOTATIONS_PER_REQUEST));
  const batches: CheckAnnotation[][] = [];
  for (let index = 0; index < annotations.length; index += batchSize) batches.push(annotations.slice(index, index + batchSize));
  return batches;
}
