import { AppError } from '../errors.js';

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

/** Most problems one error lists: a file of garbage must not make a message of megabytes. */
export const MAX_LISTED_PROBLEMS = 50;

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
