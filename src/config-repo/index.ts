export { parseDefinitionFile, MAX_DEFINITION_BYTES, type BuildDefinition, type DefinitionProblem } from './definition.js';
export { createConfigRepository, type ConfigRepository, type ConfigRepositorySource, type DefinitionLookup } from './config-repository.js';
