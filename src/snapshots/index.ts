export type { SnapshotDriver } from './snapshot-driver.js';
export { createBtrfsDriver, BTRFS_SUPER_MAGIC } from './btrfs-driver.js';
export { createCopyDriver } from './copy-driver.js';
export { detectDriver, isBtrfs } from './detect-driver.js';
export { createWorkspaces, toPathSegment, type Workspaces, type LineageScope, type PreparedWorkspace } from './workspaces.js';
export { createCaches, type Caches, type CacheScope, type CacheOutcome, type PreparedCache } from './caches.js';
