/** A base image a Dockerfile builds on: its reference as the engine resolves it, and its 1-based line. */
export interface BaseImage {
  image: string;
  line: number;
}

/**
 * Expands `$NAME`, `${NAME}`, `${NAME:-word}` and `${NAME:+word}` in `text` with `vars`
 * (the Dockerfile's rules for FROM: https://docs.docker.com/reference/dockerfile/#environment-replacement).
 * @returns the expanded text, or null when a variable has no value and no default
 */
function expand(text: string, vars: ReadonlyMap<string, string>): string | null {
  // set inside the replacer: an object, so the check below reads what it did
  const seen = { unresolved: false };
  const out = text.replace(
    /\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (_m, braced?: string, op?: string, word?: string, bare?: string) => {
      const name = (braced ?? bare) as string;
      const value = vars.get(name);
      if (op === '-') return value === undefined || value === '' ? (word ?? '') : value;
      if (op === '+') return value === undefined || value === '' ? '' : (word ?? '');
      if (value === undefined) {
        seen.unresolved = true;
        return '';
      }
      return value;
    },
  );
  return seen.unresolved ? null : out;
}

/**
 * The base images a Dockerfile's FROM lines name, with the ARGs before the first FROM
 * (their defaults, overridden by `buildArgs`) expanded: what the engine must already have,
 * since no registry is assumed. `scratch`, earlier stages (`FROM build`, matched as Docker
 * does, without case) and a reference that a variable without value leaves open are left
 * out. Parsed with dockerfile-ast (the escape directive, line continuations, comments).
 */
export async function baseImagesOf(dockerfile: string, buildArgs: Readonly<Record<string, string>>): Promise<BaseImage[]> {
  const { DockerfileParser } = await import('dockerfile-ast');
  const parsed = DockerfileParser.parse(dockerfile);
  const vars = new Map<string, string>();
  for (const arg of parsed.getInitialARGs()) {
    const property = arg.getProperty();
    const name = property?.getName();
    if (name === undefined) continue;
    const given = Object.hasOwn(buildArgs, name) ? buildArgs[name] : undefined;
    const value = given ?? property?.getValue() ?? undefined;
    if (value !== undefined) vars.set(name, value);
  }
  const stages = new Set<string>();
  const bases: BaseImage[] = [];
  for (const from of parsed.getFROMs()) {
    const raw = from.getImage();
    const stage = from.getBuildStage();
    const line = from.getRange().start.line + 1;
    if (raw !== null) {
      const image = expand(raw, vars);
      if (image !== null && image !== '' && image.toLowerCase() !== 'scratch' && !stages.has(image.toLowerCase())) bases.push({ image, line });
    }
    if (stage !== null) stages.add(stage.toLowerCase());
  }
  return bases;
}

/** The variable every stage of an image built for a pull request from a fork gets (see {@link toForkDockerfile}). */
export const FORK_BUILD_ENV = 'AUTOBUILDER_FORK_BUILD';

/**
 * The Dockerfile of an image built for a pull request from a fork: `ENV AUTOBUILDER_FORK_BUILD=true`
 * right after every FROM. The engine's build cache reuses a step's layer for the same
 * instruction on the same parent, whatever the network it ran with: with the fork's own
 * first layer in every stage, its steps never reuse a trusted build's layers (they run, under
 * the fork's network policy) and a trusted build never reuses one a fork's build made.
 */
export async function toForkDockerfile(dockerfile: string): Promise<string> {
  const { DockerfileParser } = await import('dockerfile-ast');
  const ends = new Set(
    DockerfileParser.parse(dockerfile)
      .getFROMs()
      .map((from) => from.getRange().end.line),
  );
  const lines = dockerfile.split('\n');
  return lines.flatMap((line, i) => (ends.has(i) ? [line, `ENV ${FORK_BUILD_ENV}=true`] : [line])).join('\n');
}
