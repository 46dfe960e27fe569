export { toBuildRequest, type WebhookOutcome } from './to-build-request.js';
export { createSignatureVerifier, type SignatureVerifier } from './verify-signature.js';
export { readBody, MAX_WEBHOOK_BYTES } from './read-body.js';
export { createInbox, DELIVERY_RETENTION_DAYS, type Inbox } from './inbox.js';
