export { createHardenedGit, type HardenedGitOptions } from './hardened-git.js';
