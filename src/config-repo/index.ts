export {
  parseDefinitionFile,
  parseDefinitionDocument,
  MAX_DEFINITION_BYTES,
  type BuildDefinition,
  type DefinitionDocument,
  type DefinitionProblem,
  type Trigger,
} from './definition.js';
export {
  createConfigRepository,
  type ConfigRepository,
  type ConfigRepositorySource,
  type ConfigStatus,
  type DefinitionLookup,
  type ReloadOutcome,
} from './config-repository.js';
