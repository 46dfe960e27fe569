export { createHardenedGit, type HardenedGitOptions } from './hardened-git.js';
export { withoutCredentials } from './without-credentials.js';
