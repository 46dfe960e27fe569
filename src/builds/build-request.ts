/** A request to build one commit of one repository, from a webhook or the API. */
export interface BuildRequest {
  owner: string;
  repo: string;
  /** full ref, `refs/heads/<branch>`, `refs/tags/<tag>` or `refs/pull/<number>/head` */
  ref: string;
  /**
   * the ref whose build definitions apply, when not `ref` itself: a pull request's head is
   * built with the definitions of its base branch
   */
  definitionsRef?: string;
  /** pull request number, when the build is for one (its statuses go on `sha`, the head) */
  pullRequest?: number;
  /** true for a pull request from a fork: its build gets none of the server's secrets */
  fromFork?: boolean;
  /**
   * commit sha, 40 hex; null when the event carried none (a `create` event of a tag): the
   * coordinator then resolves `ref` at the repository (`git ls-remote`) when it handles the
   * request, after the webhook was answered
   */
  sha: string | null;
  /**
   * the commit's tree id as the push payload states it (`head_commit.tree_id`), or null;
   * lets a cache hit be decided without fetching, and is checked against the fetched
   * commit whenever the build runs
   */
  tree?: string | null;
  /** URL to fetch the commit from (before clone-URL rewrites) */
  cloneUrl: string;
  /** the repository's default branch, whose lineage a new branch starts from */
  defaultBranch: string | null;
  /** X-GitHub-Delivery of the webhook that asked for it, or null */
  deliveryId: string | null;
  /** run even when an identical build succeeded before (no cache hit, no coalescing) */
  force?: boolean;
  /**
   * values of the parameters the definitions declare, by name (manual builds; checked by
   * `assertRequestParams`); absent: every build gets its defaults, as webhook builds do
   */
  params?: Record<string, string>;
  /**
   * names of the build definitions to build (a rebuild of some of a commit's builds, e.g. a
   * re-run check run); absent: every definition that matches
   */
  definitions?: string[];
}

/** One pull request of one repository (the base repository, where its statuses go). */
export interface PullRequestTarget {
  owner: string;
  repo: string;
  /** the pull request's number */
  pullRequest: number;
}
