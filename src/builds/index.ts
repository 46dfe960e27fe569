export type { Build, BuildArtifact, BuildState } from './build.js';
export { isTerminal } from './build.js';
export type { BuildRequest } from './build-request.js';
export { createBuildLogs, assertBuildId, type BuildLogs, type BuildLogWriter } from './build-log.js';
export { createCheckout, toCloneUrl, type Checkout, type CloneUrlRewrite } from './checkout.js';
export { createCoordinator, createBuildId, type Coordinator, type SubmitResult } from './coordinator.js';
export { CONTAINER_WORKDIR } from './build-execution.js';
export { parseRef, isBuildableRef, assertRepoName, isSha, type ParsedRef } from './refs.js';
export { createBuildEvents, BUILD_EVENTS, type BuildEvents, type BuildEventMap, type BuildEventName } from './build-events.js';
