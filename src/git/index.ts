export { createHardenedGit, type HardenedGitOptions } from './hardened-git.js';
export { withoutCredentials } from './without-credentials.js';
export { readGitBlobs } from './read-git-blobs.js';
