import { posix } from 'node:path';
import {
  Composer,
  CST,
  Lexer,
  LineCounter,
  Parser,
  isAlias,
  isCollection,
  isMap,
  isNode,
  isScalar,
  isSeq,
  type Document,
  type Node,
  type YAMLError,
} from 'yaml';
import { z } from 'zod';
import { AppError } from '../errors.js';

/** Largest definition file read, in bytes: a build definition is a few lines. */
export const MAX_DEFINITION_BYTES = 256 * 1024;

/**
 * One build of a build definition file: one build script with its options. The seed's
 * keys (`archives`, `artifact`, `baseimage`, `tag`) keep their meaning; the others are ours.
 */
export interface BuildDefinition {
  /** name of this build inside its repository: `tag` when given, else the script path */
  name: string;
  /** the build script, a normalised path relative to the repository root */
  script: string;
  /** absolute directory in the container where the artifact is found */
  archives: string;
  /** file name of the artifact inside `archives` */
  artifact: string;
  /** image to run; null means the server's default */
  baseimage: string | null;
  tag: string | null;
  /** extra environment variables for the build */
  env: Readonly<Record<string, string>>;
  /** false gives every build a fresh workspace instead of a snapshot of the last green one */
  incremental: boolean;
  /** seconds the build may run (capped by the server's maximum); null: the server's default */
  timeoutSeconds: number | null;
  /** seconds the build may go without printing a line before it is stopped; null: the server's setting */
  outputTimeoutSeconds: number | null;
  /** limits asked for; each is capped by the server's maximum */
  resources: { memoryBytes: number | null; cpus: number | null; pidsLimit: number | null; diskBytes: number | null };
  /** the config-repository file this came from, relative to its root */
  file: string;
}

const scriptPath = z
  .string()
  .min(1)
  .refine((p) => !p.startsWith('/') && !p.startsWith('-') && !p.includes('\0') && posix.normalize(p) === p && !p.split('/').includes('..'), {
    message: 'must be a relative path inside the repository (no "..", no leading "/" or "-")',
  });

const scriptOptions = z
  .object({
    archives: z.string().regex(/^\/[^\0]*$/, 'must be an absolute path in the container'),
    artifact: z
      .string()
      .regex(/^[^/\0]+$/, 'must be a file name (no "/")')
      .refine((n) => n !== '.' && n !== '..', 'must be a file name'),
    baseimage: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$/, 'must be a Docker image reference')
      .optional(),
    tag: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be letters, digits, ".", "_" or "-"')
      .optional(),
    env: z
      .record(
        z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name'),
        z.string().refine((v) => !v.includes('\0'), 'must not contain a NUL character'),
      )
      .optional(),
    incremental: z.boolean().optional(),
    timeout: z.number().int().positive().optional(),
    outputTimeout: z.number().int().positive().optional(),
    resources: z
      .object({
        memoryMiB: z.number().int().positive().optional(),
        cpus: z.number().positive().optional(),
        pids: z.number().int().positive().optional(),
        /** MiB the build may add to its workspace (capped by the server's builds.diskQuotaMiB) */
        diskMiB: z.number().int().positive().optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

/**
 * When a definition file applies by globs instead of by its path: its top-level
 * `on: { branches: [globs], tags: [globs] }`. Branch globs match branch names only, tag
 * globs tag names only (picomatch syntax: `*` stops at `/`, `**` does not).
 */
export interface Trigger {
  branches: string[];
  tags: string[];
}

/** A parsed definition file: its trigger (null for a file matched by its path) and builds. */
export interface DefinitionDocument {
  on: Trigger | null;
  definitions: BuildDefinition[];
}

const globList = z.array(z.string().min(1).max(200)).max(100);
const triggerSchema = z
  .object({ branches: globList.optional(), tags: globList.optional() })
  .strict()
  .refine((t) => (t.branches?.length ?? 0) + (t.tags?.length ?? 0) > 0, 'needs at least one of "branches" or "tags"');

/**
 * One problem found in a definition file. `line` is 1-based, null when the problem concerns
 * the file as a whole (its size); `key` is the dotted key path (`autobuild/build.sh.env.A`),
 * '' for the document root or the file itself.
 */
export interface DefinitionProblem {
  file: string;
  line: number | null;
  key: string;
  message: string;
}

/** Deepest nesting of lists and mappings read; a definition needs 3 (`<script>` → `resources` → `memoryMiB`). */
export const MAX_DEFINITION_DEPTH = 32;
/** Most entries in one list or mapping: the parser checks unique keys pairwise, so this bounds that cost. */
export const MAX_COLLECTION_ENTRIES = 1000;
/** Most aliases (`*name`) in one file; also yaml's own `maxAliasCount`. */
const MAX_ALIASES = 100;
/** Most nodes all aliases together may stand for, counting each alias as a copy of its anchored node. */
const MAX_ALIASED_NODES = 10_000;
/** Most problems one error lists: a file of garbage must not make a message of megabytes. */
const MAX_LISTED_PROBLEMS = 50;

/** One problem as one line: `file:line: key: message`; a problem of the whole file (no line, no key) is `file: message`. */
export function formatProblem(p: DefinitionProblem): string {
  if (p.line === null && p.key === '') return `${p.file}: ${p.message}`;
  return `${p.file}${p.line === null ? '' : `:${p.line}`}: ${p.key || '(root)'}: ${p.message}`;
}

/**
 * A definition file that does not validate (code `DEFINITION_INVALID`): every problem found,
 * structured in `problems` and in the message as one `file:line: key: message` line each.
 * At most 50 are kept; the last then says how many more there were.
 */
export class DefinitionError extends AppError {
  readonly problems: readonly DefinitionProblem[];

  constructor(problems: readonly DefinitionProblem[], options: { cause?: unknown } = {}) {
    const first = problems[0];
    const listed =
      problems.length <= MAX_LISTED_PROBLEMS || first === undefined
        ? problems
        : [
            ...problems.slice(0, MAX_LISTED_PROBLEMS - 1),
            { file: first.file, line: null, key: '', message: `and ${problems.length - MAX_LISTED_PROBLEMS + 1} more problems` },
          ];
    super('DEFINITION_INVALID', listed.map(formatProblem).join('\n'), options);
    this.name = 'DefinitionError';
    this.problems = Object.freeze(listed.map((p) => Object.freeze({ ...p })));
  }
}

function tooLarge(file: string): DefinitionProblem {
  return { file, line: null, key: '', message: `larger than ${MAX_DEFINITION_BYTES} bytes` };
}

/** 1-based line of a byte offset. */
function lineAtByte(bytes: Uint8Array, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < bytes.length; i++) if (bytes[i] === 0x0a) line++;
  return line;
}

/** The encoding a byte order mark names, for the ones that are not UTF-8's; null when there is none. */
function foreignByteOrderMark(bytes: Uint8Array): string | null {
  const [a, b, c, d] = bytes;
  if (a === 0xff && b === 0xfe) return c === 0 && d === 0 ? 'UTF-32LE' : 'UTF-16LE';
  if (a === 0xfe && b === 0xff) return 'UTF-16BE';
  if (a === 0 && b === 0 && c === 0xfe && d === 0xff) return 'UTF-32BE';
  return null;
}

/** UTF-16 without a byte order mark shows as zero bytes at every other position: ASCII text has one per character. */
function guessUtf16(bytes: Uint8Array): 'UTF-16LE' | 'UTF-16BE' | null {
  const sample = Math.min(bytes.length, 1024) & ~1;
  let even = 0;
  let odd = 0;
  for (let i = 0; i < sample; i++) {
    if (bytes[i] !== 0) continue;
    if (i % 2 === 0) even++;
    else odd++;
  }
  const quarter = sample / 8;
  if (odd >= quarter && even < odd / 4) return 'UTF-16LE';
  if (even >= quarter && odd < even / 4) return 'UTF-16BE';
  return null;
}

/**
 * Offset of the first byte sequence that is not UTF-8 (the WHATWG decoder's rules: no
 * overlong forms, no surrogates, nothing past U+10FFFF), or -1.
 */
function invalidUtf8Offset(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length;) {
    const lead = bytes[i] ?? 0;
    if (lead < 0x80) {
      i++;
      continue;
    }
    let trailing: number;
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) trailing = 1;
    else if (lead >= 0xe0 && lead <= 0xef) {
      trailing = 2;
      if (lead === 0xe0) low = 0xa0;
      if (lead === 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      trailing = 3;
      if (lead === 0xf0) low = 0x90;
      if (lead === 0xf4) high = 0x8f;
    } else return i;
    for (let k = 1; k <= trailing; k++) {
      const byte = bytes[i + k];
      if (byte === undefined || byte < (k === 1 ? low : 0x80) || byte > (k === 1 ? high : 0xbf)) return i;
    }
    i += trailing + 1;
  }
  return -1;
}

/**
 * Decodes the bytes of a definition file as UTF-8 (a UTF-8 byte order mark is dropped).
 *
 * @param bytes - the file's content as read from disk or git
 * @param file - its path relative to the config repository root, for messages
 * @returns the text, for {@link parseDefinitionDocument}
 * @throws DefinitionError when the file is over {@link MAX_DEFINITION_BYTES} (checked first),
 *   UTF-16 or UTF-32 (with or without a byte order mark), holds a NUL byte, or is not valid
 *   UTF-8; the problem gives the line and the byte offset
 */
export function decodeDefinitionBytes(bytes: Uint8Array, file: string): string {
  if (bytes.length > MAX_DEFINITION_BYTES) throw new DefinitionError([tooLarge(file)]);
  const at = (offset: number, message: string, cause?: unknown): DefinitionError =>
    new DefinitionError([{ file, line: lineAtByte(bytes, offset), key: '', message }], cause === undefined ? {} : { cause });
  const bom = foreignByteOrderMark(bytes);
  if (bom !== null) throw at(0, `encoded as ${bom} (it starts with that byte order mark); a definition file is UTF-8`);
  const nul = bytes.indexOf(0);
  if (nul !== -1) {
    const utf16 = guessUtf16(bytes);
    throw at(
      nul,
      utf16 === null
        ? `a NUL byte at byte offset ${nul}; a definition file is UTF-8 text`
        : `looks like ${utf16} without a byte order mark (a NUL byte at byte offset ${nul}); a definition file is UTF-8`,
    );
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    const offset = invalidUtf8Offset(bytes);
    if (offset === -1) throw at(0, 'not valid UTF-8', err);
    throw at(offset, `not valid UTF-8 at byte offset ${offset} (byte 0x${(bytes[offset] ?? 0).toString(16).padStart(2, '0')})`, err);
  }
}

/** The text of a scalar key token of the CST, for key paths; `?` for anything else. */
function tokenKey(token: CST.Token | null | undefined): string {
  if (token === null || token === undefined) return '?';
  if (token.type === 'alias') return token.source;
  // not strict, errors ignored: a malformed key is reported by the composer, not here
  return CST.isScalar(token) ? CST.resolveAsScalar(token, false, () => undefined).value : '?';
}

/** Key path of the node being read when the parser stopped: mapping keys and list indices down to the first flow collection. */
function keyPathOfParserStack(stack: readonly CST.Token[]): string {
  const path: string[] = [];
  for (const token of stack) {
    if (token.type === 'block-map') {
      const item = token.items.at(-1);
      if (item?.sep === undefined) break;
      path.push(tokenKey(item.key));
    } else if (token.type === 'block-seq') path.push(String(token.items.length - 1));
    else if (token.type === 'flow-collection') break;
  }
  return path.join('.');
}

/**
 * Reads `text` into CST tokens (yaml's lexer and parser keep explicit stacks; its composer
 * recurses) and refuses, before anything is composed, nesting deeper than
 * {@link MAX_DEFINITION_DEPTH} and collections of more than {@link MAX_COLLECTION_ENTRIES}
 * entries.
 * @throws DefinitionError naming the line and key where the limit was passed
 */
function readTokens(text: string, file: string, lineCounter: LineCounter): CST.Token[] {
  const parser = new Parser(lineCounter.addNewLine);
  lineCounter.addNewLine(0);
  const tokens: CST.Token[] = [];
  const syntaxErrors: DefinitionProblem[] = [];
  for (const lexeme of new Lexer().lex(text)) {
    for (const token of parser.next(lexeme)) {
      tokens.push(token);
      // Composing makes an Error object per stray token: a file of garbage is refused here, after a screenful.
      if (
        token.type === 'error' &&
        syntaxErrors.push({ file, line: lineCounter.linePos(token.offset).line, key: '', message: token.message }) === MAX_LISTED_PROBLEMS
      ) {
        throw new DefinitionError([...syntaxErrors.slice(0, -1), { file, line: null, key: '', message: 'more syntax errors follow; reading stopped' }]);
      }
    }
    // The parser's stack holds every collection still open: stop as soon as too many are.
    if (parser.stack.length > MAX_DEFINITION_DEPTH && parser.stack.filter((t) => CST.isCollection(t)).length > MAX_DEFINITION_DEPTH) {
      throw new DefinitionError([
        {
          file,
          line: lineCounter.linePos(parser.offset).line,
          key: keyPathOfParserStack(parser.stack),
          message: `lists and mappings nested more than ${MAX_DEFINITION_DEPTH} deep`,
        },
      ]);
    }
  }
  for (const token of parser.end()) tokens.push(token);

  // key tokens in paths are read as text only for a message
  const pending: { token: CST.Token; path: readonly (string | CST.Token | null | undefined)[] }[] = tokens.map((token) => ({ token, path: [] }));
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { token, path } = next;
    if (token.type === 'document' && token.value !== undefined) pending.push({ token: token.value, path });
    if (!CST.isCollection(token)) continue;
    if (token.items.length > MAX_COLLECTION_ENTRIES) {
      throw new DefinitionError([
        {
          file,
          line: lineCounter.linePos(token.offset).line,
          key: path.map((k) => (typeof k === 'string' ? k : tokenKey(k))).join('.'),
          message: `${token.items.length} entries in one list or mapping; at most ${MAX_COLLECTION_ENTRIES}`,
        },
      ]);
    }
    const list = token.type === 'block-seq' || (token.type === 'flow-collection' && token.start.source === '[');
    token.items.forEach((item, index) => {
      if (item.key !== undefined && item.key !== null) pending.push({ token: item.key, path: [...path, item.key] });
      if (item.value !== undefined) pending.push({ token: item.value, path: [...path, list && item.sep === undefined ? String(index) : item.key] });
    });
  }
  return tokens;
}

/** Text of a mapping key for key paths: `~` for an empty one, `*name` for an alias, `?` for a collection. */
function keyText(key: unknown): string {
  if (isScalar(key))
    return key.value === null ? '~' : typeof key.value === 'object' ? '?' : String(key.value as string | number | boolean | bigint | undefined);
  return isAlias(key) ? `*${key.source}` : '?';
}

/** Dotted key path of the innermost node whose content holds `offset` (a node's tag and anchor come before its range). */
function keyPathAt(doc: Document.Parsed, offset: number): string {
  const path: string[] = [];
  let node: unknown = doc.contents;
  while (isCollection(node) && node.range && node.range[0] <= offset) {
    let next: unknown;
    if (isMap(node)) {
      for (const pair of node.items) {
        const end = (isNode(pair.value) ? pair.value.range?.[2] : undefined) ?? (isNode(pair.key) ? pair.key.range?.[2] : undefined);
        if (end === undefined || end <= offset) continue;
        path.push(keyText(pair.key));
        if (isNode(pair.key) && pair.key.range && offset < pair.key.range[2]) return path.join('.');
        next = pair.value;
        break;
      }
    } else {
      const index = node.items.findIndex((item) => isNode(item) && item.range !== null && item.range !== undefined && offset < item.range[2]);
      if (index !== -1) {
        path.push(String(index));
        next = node.items[index];
      }
    }
    if (next === undefined) break;
    node = next;
  }
  return path.join('.');
}

/** A message for one of yaml's errors or warnings; an unknown tag is named the way it was written. */
function yamlMessage(err: YAMLError): string {
  const first = err.message.split('\n')[0] ?? err.code;
  const tag = err.code === 'TAG_RESOLVE_FAILED' ? /^Unresolved tag: (.*)$/.exec(first)?.[1] : undefined;
  if (tag === undefined) return first;
  const written = tag.startsWith('tag:yaml.org,2002:') ? `!!${tag.slice('tag:yaml.org,2002:'.length)}` : tag;
  return `tag ${written} is not allowed: definitions are plain YAML (the core schema, no custom tags)`;
}

/**
 * Walks the composed document (with an explicit stack) before it becomes data: every key is
 * a plain scalar, every alias follows its anchor and is not inside it, and aliases stand for
 * at most {@link MAX_ALIASED_NODES} nodes in all ("billion laughs" needs only a few lines).
 */
function checkNodes(doc: Document.Parsed, file: string, lineCounter: LineCounter): DefinitionProblem[] {
  const problems: DefinitionProblem[] = [];
  const lineOfNode = (node: Node): number | null => (node.range ? lineCounter.linePos(node.range[0]).line : null);
  /** the last node seen with each anchor (yaml resolves an alias to the last one before it) */
  const anchors = new Map<string, Node>();
  /** node count of each finished anchored node, aliases inside counted as copies */
  const sizes = new Map<Node, number>();
  const open = new Set<Node>();
  let aliases = 0;
  let aliased = 0;
  interface Frame {
    node: Node;
    children: [unknown, string[]][];
    next: number;
    size: number;
  }
  const stack: Frame[] = [];

  /** Visits one node: returns its size, or null when it was pushed (a collection) or the walk must stop. */
  const enter = (node: unknown, path: string[]): number | null => {
    if (!isNode(node)) return 0;
    if (isAlias(node)) {
      const source = anchors.get(node.source);
      const problem = (message: string): null => (problems.push({ file, line: lineOfNode(node), key: path.join('.'), message }), null);
      if (source === undefined) return problem(`alias *${node.source} has no anchor &${node.source} before it`);
      if (open.has(source)) return problem(`alias *${node.source} is inside its own anchor`);
      const size = sizes.get(source) ?? 1;
      aliases += 1;
      aliased += size;
      if (aliases > MAX_ALIASES) return problem(`more than ${MAX_ALIASES} aliases`);
      if (aliased > MAX_ALIASED_NODES) return problem(`aliases stand for more than ${MAX_ALIASED_NODES} values in all (an alias bomb?)`);
      return size;
    }
    if (node.anchor !== undefined) anchors.set(node.anchor, node);
    if (isMap(node)) {
      const children: [unknown, string[]][] = [];
      for (const pair of node.items) {
        const key = keyText(pair.key);
        if (!isScalar(pair.key)) {
          const where = isNode(pair.key) ? lineOfNode(pair.key) : lineOfNode(node);
          problems.push({ file, line: where, key: [...path, key].join('.'), message: 'a key must be a plain value, not a list, a mapping or an alias' });
        }
        children.push([pair.key, [...path, key]], [pair.value, [...path, key]]);
      }
      open.add(node);
      stack.push({ node, children, next: 0, size: 1 });
      return null;
    }
    if (isSeq(node)) {
      open.add(node);
      stack.push({ node, children: node.items.map((item, i) => [item, [...path, String(i)]]), next: 0, size: 1 });
      return null;
    }
    if (node.anchor !== undefined) sizes.set(node, 1);
    return 1;
  };

  const rootSize = enter(doc.contents, []);
  if (rootSize === null && problems.length > 0) return problems;
  while (stack.length > 0) {
    const frame = stack[stack.length - 1] as Frame;
    const child = frame.children[frame.next];
    if (child === undefined) {
      stack.pop();
      open.delete(frame.node);
      if (frame.node.anchor !== undefined) sizes.set(frame.node, frame.size);
      const parent = stack[stack.length - 1];
      if (parent !== undefined) parent.size += frame.size;
      continue;
    }
    frame.next += 1;
    const before = problems.length;
    const size = enter(child[0], child[1]);
    if (size !== null) frame.size += size;
    // an alias problem makes the sizes meaningless: stop at the first
    else if (problems.length > before && isAlias(child[0])) break;
  }
  return problems;
}

/**
 * Parses one build definition file of the config repository (the seed's format, see
 * DESIGN §3). YAML is read with the core schema only (no custom tags, not even yaml's
 * `!!binary`, `!!set`, `!!timestamp`), at most {@link MAX_DEFINITION_BYTES} bytes,
 * {@link MAX_DEFINITION_DEPTH} levels and {@link MAX_COLLECTION_ENTRIES} entries per
 * collection, and with aliases capped, so that any input is answered in bounded time and memory.
 *
 * @param input - the file's content: text, or bytes (decoded by {@link decodeDefinitionBytes})
 * @param file - its path relative to the config repository root, for messages
 * @returns one {@link BuildDefinition} per entry of `buildscripts`, in order
 * @throws DefinitionError (an AppError `DEFINITION_INVALID`) listing every problem with file, line and key
 */
export function parseDefinitionFile(input: string | Uint8Array, file: string): BuildDefinition[] {
  return parseDefinitionDocument(input, file).definitions;
}

/**
 * Parses a definition file like {@link parseDefinitionFile}, with its `on:` trigger.
 * @throws DefinitionError (an AppError `DEFINITION_INVALID`) listing every problem with file, line and key
 */
export function parseDefinitionDocument(input: string | Uint8Array, file: string): DefinitionDocument {
  const text = typeof input === 'string' ? input : decodeDefinitionBytes(input, file);
  // a UTF-8 byte is at most one UTF-16 unit: the length alone refuses a huge string without encoding it
  if (text.length > MAX_DEFINITION_BYTES || Buffer.byteLength(text) > MAX_DEFINITION_BYTES) throw new DefinitionError([tooLarge(file)]);
  const nul = text.indexOf('\0');
  if (nul !== -1) {
    const line = text.slice(0, nul).split('\n').length;
    throw new DefinitionError([{ file, line, key: '', message: 'a NUL character; a definition file is UTF-8 text (is this one UTF-16?)' }]);
  }

  const lineCounter = new LineCounter();
  const tokens = readTokens(text, file, lineCounter);
  const problems: DefinitionProblem[] = [];
  let doc: Document.Parsed | undefined;
  for (const composed of new Composer({ schema: 'core', uniqueKeys: true, resolveKnownTags: false }).compose(tokens, true, text.length)) {
    if (doc !== undefined) {
      problems.push({ file, line: lineCounter.linePos(composed.range[0]).line, key: '', message: 'a second YAML document; a definition file holds one' });
      break;
    }
    doc = composed;
  }
  if (doc === undefined) throw new DefinitionError([{ file, line: null, key: '', message: 'no YAML document' }]);
  const parsed = doc;
  const lineOf = (path: readonly PropertyKey[]): number | null => {
    for (let n = path.length; n >= 0; n--) {
      const node = parsed.getIn(path.slice(0, n), true);
      if (isNode(node) && node.range) return lineCounter.linePos(node.range[0]).line;
    }
    return null;
  };
  // Warnings count too: an unknown tag such as `!!js/function` is only a warning to the parser.
  for (const err of [...parsed.errors, ...parsed.warnings]) {
    problems.push({ file, line: lineCounter.linePos(err.pos[0]).line, key: keyPathAt(parsed, err.pos[0]), message: yamlMessage(err) });
  }
  if (problems.length > 0) throw new DefinitionError(problems);
  problems.push(...checkNodes(parsed, file, lineCounter));
  if (problems.length > 0) throw new DefinitionError(problems);

  let data: unknown;
  try {
    data = parsed.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (err) {
    throw new DefinitionError([{ file, line: null, key: '', message: err instanceof Error ? err.message : String(err) }], { cause: err });
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new DefinitionError([{ file, line: lineOf([]), key: '', message: 'a build definition is a mapping with a "buildscripts" list' }]);
  }
  const record = data as Record<string, unknown>;
  const entry = (key: string): unknown => (Object.hasOwn(record, key) ? record[key] : undefined);
  /** Key path of a zod issue under `prefix`; an unknown key points at the key itself. */
  const issuePath = (prefix: string, issue: z.core.$ZodIssue): (string | number)[] => {
    const path = [prefix, ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))];
    return issue.code === 'unrecognized_keys' && issue.keys.length === 1 && issue.keys[0] !== undefined ? [...path, issue.keys[0]] : path;
  };
  const scripts = z.array(scriptPath).min(1).safeParse(entry('buildscripts'));
  if (!scripts.success) {
    for (const issue of scripts.error.issues) {
      const path = issuePath('buildscripts', issue);
      problems.push({
        file,
        line: lineOf(path),
        key: path.join('.'),
        message: entry('buildscripts') === undefined ? 'required: a list of build scripts' : issue.message,
      });
    }
    throw new DefinitionError(problems);
  }

  let on: Trigger | null = null;
  if (Object.hasOwn(record, 'on')) {
    const trigger = triggerSchema.safeParse(record['on']);
    if (trigger.success) on = { branches: trigger.data.branches ?? [], tags: trigger.data.tags ?? [] };
    else {
      for (const issue of trigger.error.issues) {
        const path = issuePath('on', issue);
        problems.push({ file, line: lineOf(path), key: path.join('.'), message: issue.message });
      }
    }
  }

  const definitions: BuildDefinition[] = [];
  const names = new Set<string>();
  const listed = new Set(scripts.data);
  scripts.data.forEach((script, index) => {
    const options = scriptOptions.safeParse(entry(script));
    if (!options.success) {
      for (const issue of options.error.issues) {
        const path = issuePath(script, issue);
        const missing = entry(script) === undefined;
        const message = missing ? 'required: the options of this build script (archives, artifact)' : issue.message;
        // a script listed without options is best pointed at where it is listed
        const line = missing ? lineOf(['buildscripts', index]) : lineOf(path);
        problems.push({ file, line, key: path.join('.'), message });
      }
      return;
    }
    const o = options.data;
    const name = o.tag ?? script;
    if (names.has(name)) {
      problems.push({ file, line: lineOf([script]), key: script, message: `two builds are named ${JSON.stringify(name)}; give one a distinct "tag"` });
      return;
    }
    names.add(name);
    definitions.push({
      name,
      script,
      archives: o.archives,
      artifact: o.artifact,
      baseimage: o.baseimage ?? null,
      tag: o.tag ?? null,
      env: Object.freeze({ ...o.env }),
      incremental: o.incremental ?? true,
      timeoutSeconds: o.timeout ?? null,
      outputTimeoutSeconds: o.outputTimeout ?? null,
      resources: {
        memoryBytes: o.resources?.memoryMiB === undefined ? null : o.resources.memoryMiB * 1024 * 1024,
        cpus: o.resources?.cpus ?? null,
        pidsLimit: o.resources?.pids ?? null,
        diskBytes: o.resources?.diskMiB === undefined ? null : o.resources.diskMiB * 1024 * 1024,
      },
      file,
    });
  });
  for (const key of Object.keys(record)) {
    if (key !== 'buildscripts' && key !== 'on' && !listed.has(key)) {
      problems.push({ file, line: lineOf([key]), key, message: 'not listed in "buildscripts"' });
    }
  }
  if (problems.length > 0) throw new DefinitionError(problems);
  return { on, definitions };
}
