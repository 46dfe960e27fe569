export { createArtifactStore, isDigest, type ArtifactStore, type StoredArtifact } from './artifact-store.js';
