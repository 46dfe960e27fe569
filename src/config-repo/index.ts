export { parseDefinitionFile, parseDefinitionDocument, type BuildDefinition, type DefinitionDocument, type Trigger } from './definition.js';
export { DefinitionError, formatProblem, type DefinitionProblem } from './definition-error.js';
export { decodeDefinitionBytes, MAX_DEFINITION_BYTES } from './decode-definition-bytes.js';
export {
  createConfigRepository,
  type ConfigRepository,
  type ConfigRepositorySource,
  type ConfigStatus,
  type DefinitionLookup,
  type ReloadOutcome,
} from './config-repository.js';
