import type { Config } from '../config/schema.js';

/**
 * What a build reports on its commit: commit statuses
 * (https://docs.github.com/rest/commits/statuses), check runs
 * (https://docs.github.com/rest/checks/runs, GitHub App mode only) or both.
 */
export type Reporting = 'statuses' | 'checks' | 'both';

/**
 * The effective `github.reporting`: the configured value, else `checks` in GitHub App mode
 * (`github.app` set) and `statuses` otherwise (token mode, or no credentials at all).
 */
export function toReporting(config: { readonly github: Pick<Config['github'], 'app' | 'reporting'> }): Reporting {
  return config.github.reporting ?? (config.github.app === undefined ? 'statuses' : 'checks');
}
