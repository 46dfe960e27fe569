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
import { definitionTooLarge, MAX_DEFINITION_BYTES } from './decode-definition-bytes.js';
import { DefinitionError, MAX_LISTED_PROBLEMS, type DefinitionProblem } from './definition-error.js';

/** Deepest nesting of lists and mappings read; a definition needs 3 (`<script>` → `resources` → `memoryMiB`). */
export const MAX_DEFINITION_DEPTH = 32;
/** Most entries in one list or mapping: the parser checks unique keys pairwise, so this bounds that cost. */
export const MAX_COLLECTION_ENTRIES = 1000;
/** Most aliases (`*name`) in one file; also yaml's own `maxAliasCount`. */
const MAX_ALIASES = 100;
/** Most nodes all aliases together may stand for, counting each alias as a copy of its anchored node. */
const MAX_ALIASED_NODES = 10_000;

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

/** A definition file read as YAML: its data, and where each of its keys is. */
export interface DefinitionYaml {
  /** the document as plain data: mappings are objects, lists arrays, scalars of the core schema */
  data: unknown;
  /** 1-based line of the node at key path `path`, else of its nearest ancestor that has one; null when none has */
  lineOf: (path: readonly PropertyKey[]) => number | null;
}

/**
 * Reads the text of a definition file as one YAML document with the core schema only (no
 * custom tags, not even yaml's `!!binary`, `!!set`, `!!timestamp`), at most
 * {@link MAX_DEFINITION_BYTES} bytes, {@link MAX_DEFINITION_DEPTH} levels and
 * {@link MAX_COLLECTION_ENTRIES} entries per collection, and with aliases capped, so that any
 * input is answered in bounded time and memory. What the data means is not checked here.
 * @throws DefinitionError listing every problem found (syntax, tags, keys, aliases, limits) with line and key
 */
export function readDefinitionYaml(text: string, file: string): DefinitionYaml {
  // a UTF-8 byte is at most one UTF-16 unit: the length alone refuses a huge string without encoding it
  if (text.length > MAX_DEFINITION_BYTES || Buffer.byteLength(text) > MAX_DEFINITION_BYTES) throw new DefinitionError([definitionTooLarge(file)]);
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
  return { data, lineOf };
}
