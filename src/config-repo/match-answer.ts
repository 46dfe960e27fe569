import type { DefinitionLookup, MatchCandidate } from './config-snapshot.js';

/** One build a dry run says a ref would run. */
export interface WouldRun {
  name: string;
  /** the commit status context it posts: `autobuilder/<name>` */
  context: string;
  /** the definition file, relative to the config repository root */
  file: string;
  script: string;
  /** null: the server's `docker.defaultImage` */
  baseimage: string | null;
  incremental: boolean;
}

/**
 * The answer of a dry run, the same from the server (`GET /api/config/match`) and offline
 * (`autobuilder config match DIR`): which builds `ref` of `repo` would run, from which files,
 * and why each file of the repository matched or not.
 */
export interface MatchAnswer {
  /** `owner/name` as asked */
  repo: string;
  ref: string;
  /** config repository commit the definitions were read at; null for a directory that is not a git work tree */
  configSha: string | null;
  /** empty when nothing matches (see `reason`) */
  wouldRun: WouldRun[];
  /** why nothing would run; null when something would */
  reason: string | null;
  candidates: MatchCandidate[];
}

/** The {@link MatchAnswer} of one lookup of `ref` in `repo`. */
export function toMatchAnswer(repo: string, ref: string, lookup: DefinitionLookup): MatchAnswer {
  return {
    repo,
    ref,
    configSha: lookup.configSha,
    wouldRun: lookup.definitions.map((d) => ({
      name: d.name,
      context: `autobuilder/${d.name}`,
      file: d.file,
      script: d.script,
      baseimage: d.baseimage,
      incremental: d.incremental,
    })),
    reason: lookup.reason,
    candidates: lookup.candidates,
  };
}
