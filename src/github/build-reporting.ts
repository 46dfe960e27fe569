import type { Build } from '../builds/build.js';
import type { BuildReporter } from '../builds/build-reporter.js';
import type { CheckRunPublisher } from './check-runs.js';
import type { CommitStatusPublisher } from './commit-statuses.js';
import type { Reporting } from './reporting.js';

/**
 * The {@link BuildReporter} of `github.reporting`: `statuses` posts commit statuses at the
 * changes they report (as before check runs existed), `checks` keeps one check run per build
 * (also at the other changes, through `progress`), `both` does both. Each goes through its own
 * durable outbox; `publish` resolves once every one is stored.
 */
export function createBuildReporter(options: { reporting: Reporting; statuses: CommitStatusPublisher; checks: CheckRunPublisher }): BuildReporter {
  const { reporting, statuses, checks } = options;
  const toStatuses = reporting === 'statuses' || reporting === 'both';
  const toChecks = reporting === 'checks' || reporting === 'both';
  return {
    async publish(build: Build) {
      await Promise.all([toStatuses ? statuses.publish(build) : undefined, toChecks ? checks.publish(build) : undefined]);
    },
    progress(build: Build) {
      if (toChecks) checks.progress(build);
    },
  };
}
