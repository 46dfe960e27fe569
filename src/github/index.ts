export { createCommitStatusPublisher, toCommitStatusState, toDescription, MAX_DESCRIPTION, type CommitStatusPublisher, type CommitStatusState } from './commit-statuses.js';
