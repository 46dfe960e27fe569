/** Replaces every occurrence of known secret values in text. */
export type SecretMasker = (text: string) => string;

/** What a masked secret is shown as. */
export const MASK = '***';

/**
 * Creates a masker for `secrets` (values shorter than 4 characters are ignored: masking
 * them would shred ordinary text). Longer secrets are replaced first, so one secret that
 * contains another is masked whole.
 */
export function createSecretMasker(secrets: Iterable<string | undefined>): SecretMasker {
  const values = [...new Set([...secrets].filter((s): s is string => s !== undefined && s.length >= 4))].sort((a, b) => b.length - a.length);
  if (values.length === 0) return (text) => text;
  return (text) => {
    let out = text;
    for (const value of values) if (out.includes(value)) out = out.split(value).join(MASK);
    return out;
  };
}
