import type { Build } from './build.js';

/**
 * Where the coordinator reports its builds' changes to the forge (GitHub's commit statuses,
 * check runs or both; see `createBuildReporter`).
 *
 * Contract: neither method throws synchronously nor holds a build up; a failure on the way to
 * GitHub is the reporter's to log and retry.
 */
export interface BuildReporter {
  /**
   * The build as it is now, at a change commit statuses report (queued or waiting, joined, its
   * end); resolves once the report is stored (durable), not sent. Rejects only when it could
   * not be stored.
   */
  publish(build: Build): Promise<void>;
  /**
   * Any other change of a build (it started, its workspace is known): for reports that show
   * more than a commit status does (a check run's `in_progress` and summary). Optional.
   */
  progress?(build: Build): void;
}
