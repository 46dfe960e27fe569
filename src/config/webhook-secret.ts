import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Where a generated webhook secret lives, and whether it was made just now. */
export interface WebhookSecret {
  secret: string;
  /** the file it was read from or written to; null when it came from the configuration */
  file: string | null;
  generated: boolean;
}

/**
 * Returns the webhook secret to verify deliveries with. With none configured, reads
 * `<dataDir>/webhook-secret`, creating it (32 random bytes, hex, mode 0600) the first time,
 * so the server never runs without one and never accepts unsigned webhooks.
 */
export async function ensureWebhookSecret(configured: string | undefined, dataDir: string): Promise<WebhookSecret> {
  if (configured !== undefined) return { secret: configured, file: null, generated: false };
  const file = join(dataDir, 'webhook-secret');
  try {
    const secret = (await readFile(file, 'utf8')).trim();
    if (secret !== '') return { secret, file, generated: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(dataDir, { recursive: true });
  const secret = randomBytes(32).toString('hex');
  await writeFile(file, `${secret}\n`, { mode: 0o600 });
  return { secret, file, generated: true };
}
