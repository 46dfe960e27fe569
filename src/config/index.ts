export { loadConfig } from './load-config.js';
export { configSchema, type Config, type ConfigInput } from './schema.js';
export { ensureWebhookSecret, type WebhookSecret } from './webhook-secret.js';
