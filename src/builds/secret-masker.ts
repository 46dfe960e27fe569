/**
 * Replaces every occurrence of known secret values in text; `secrets` lists those values,
 * longest first.
 */
export type SecretMasker = ((text: string) => string) & { readonly secrets: readonly string[] };

/** What a masked secret is shown as. */
export const MASK = '***';

/**
 * Creates a masker for `secrets` (values shorter than 4 characters are ignored: masking
 * them would shred ordinary text). Longer secrets are replaced first, so one secret that
 * contains another is masked whole.
 */
export function createSecretMasker(secrets: Iterable<string | undefined>): SecretMasker {
  const values = [...new Set([...secrets].filter((s): s is string => s !== undefined && s.length >= 4))].sort((a, b) => b.length - a.length);
  const mask = (text: string): string => {
    let out = text;
    for (const value of values) if (out.includes(value)) out = out.split(value).join(MASK);
    return out;
  };
  return Object.assign(mask, { secrets: values });
}

/**
 * Masks a line that arrives in pieces (a long output line cut by the runner): `piece(text,
 * complete)` returns the masked text to write now, or null when all of it waits for the
 * next piece. The end of an incomplete piece that could be the start of a secret, or that
 * holds a secret the cut would split, is kept back and joined to the next piece, so a secret
 * is masked wherever the line was cut. What is kept back is bounded: past `maxCarry`
 * characters the piece is written as it is.
 */
export function createPieceMasker(mask: SecretMasker, maxCarry = 256 * 1024): { piece(text: string, complete: boolean): string | null } {
  const longest = mask.secrets[0]?.length ?? 0;
  let carry = '';
  return {
    piece(text, complete) {
      const whole = carry + text;
      carry = '';
      if (complete || longest === 0) return mask(whole);
      let cut = Math.max(0, whole.length - (longest - 1));
      // a secret that starts before the cut and ends after it moves the cut to its start
      for (let moved = true; moved && cut > 0;) {
        moved = false;
        for (const secret of mask.secrets) {
          const at = whole.indexOf(secret, Math.max(0, cut - secret.length + 1));
          if (at !== -1 && at < cut && at + secret.length > cut) {
            cut = at;
            moved = true;
          }
        }
      }
      if (whole.length - cut > maxCarry) return mask(whole);
      carry = whole.slice(cut);
      return cut === 0 ? null : mask(whole.slice(0, cut));
    },
  };
}
