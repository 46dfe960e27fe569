import { createHmac, timingSafeEqual } from 'node:crypto';
import { AppError } from '../errors.js';

/** Checks `X-Hub-Signature-256` of a delivery against the raw body. */
export type SignatureVerifier = (body: Buffer, headers: Record<string, string | string[] | undefined>) => Promise<void>;

const SIGNATURE_256 = /^sha256=[0-9a-f]{64}$/;

/**
 * Creates the verifier for `secret`: HMAC-SHA256 (node:crypto) over the raw body bytes as
 * they arrived, never a decoded and re-encoded string, compared in constant time with
 * `timingSafeEqual` (https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries).
 * SHA-1 signatures (`X-Hub-Signature`) alone are refused; so is an empty body.
 * @throws AppError `SIGNATURE_MISSING` or `SIGNATURE_INVALID` (401)
 */
export function createSignatureVerifier(secret: string): SignatureVerifier {
  return async (body, headers) => {
    const header = headers['x-hub-signature-256'];
    if (header === undefined) {
      const sha1 = headers['x-hub-signature'] !== undefined;
      throw new AppError(
        'SIGNATURE_MISSING',
        sha1 ? 'only an X-Hub-Signature (SHA-1) was sent; X-Hub-Signature-256 is required' : 'missing X-Hub-Signature-256 header',
        { status: 401 },
      );
    }
    if (typeof header !== 'string' || !SIGNATURE_256.test(header)) {
      throw new AppError('SIGNATURE_INVALID', 'malformed X-Hub-Signature-256 header (expected sha256=<64 hex>)', { status: 401 });
    }
    // both 32 bytes: the header's format is checked above
    const expected = createHmac('sha256', secret).update(body).digest();
    const given = Buffer.from(header.slice('sha256='.length), 'hex');
    if (body.length === 0 || !timingSafeEqual(expected, given)) {
      throw new AppError('SIGNATURE_INVALID', 'X-Hub-Signature-256 does not match the body', { status: 401 });
    }
  };
}
