export { BUILD_ID_LABEL, INSTANCE_LABEL, type ContainerRunner, type ContainerSpec, type ContainerResult } from './container-runner.js';
export { createDockerRunner, type DockerRunnerLimits } from './docker-runner.js';
