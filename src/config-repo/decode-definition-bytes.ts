import { DefinitionError, type DefinitionProblem } from './definition-error.js';

/** Largest definition file read, in bytes: a build definition is a few lines. */
export const MAX_DEFINITION_BYTES = 256 * 1024;

/** The problem of a file over {@link MAX_DEFINITION_BYTES}: it concerns the whole file, so it has no line. */
export function definitionTooLarge(file: string): DefinitionProblem {
  return { file, line: null, key: '', message: `larger than ${MAX_DEFINITION_BYTES} bytes` };
}

/** 1-based line of a byte offset. */
function lineAtByte(bytes: Uint8Array, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < bytes.length; i++) if (bytes[i] === 0x0a) line++;
  return line;
}

/** The encoding a byte order mark names, for the ones that are not UTF-8's; null when there is none. */
function foreignByteOrderMark(bytes: Uint8Array): string | null {
  const [a, b, c, d] = bytes;
  if (a === 0xff && b === 0xfe) return c === 0 && d === 0 ? 'UTF-32LE' : 'UTF-16LE';
  if (a === 0xfe && b === 0xff) return 'UTF-16BE';
  if (a === 0 && b === 0 && c === 0xfe && d === 0xff) return 'UTF-32BE';
  return null;
}

/** UTF-16 without a byte order mark shows as zero bytes at every other position: ASCII text has one per character. */
function guessUtf16(bytes: Uint8Array): 'UTF-16LE' | 'UTF-16BE' | null {
  const sample = Math.min(bytes.length, 1024) & ~1;
  let even = 0;
  let odd = 0;
  for (let i = 0; i < sample; i++) {
    if (bytes[i] !== 0) continue;
    if (i % 2 === 0) even++;
    else odd++;
  }
  const quarter = sample / 8;
  if (odd >= quarter && even < odd / 4) return 'UTF-16LE';
  if (even >= quarter && odd < even / 4) return 'UTF-16BE';
  return null;
}

/**
 * Offset of the first byte sequence that is not UTF-8 (the WHATWG decoder's rules: no
 * overlong forms, no surrogates, nothing past U+10FFFF), or -1.
 */
function invalidUtf8Offset(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length;) {
    const lead = bytes[i] ?? 0;
    if (lead < 0x80) {
      i++;
      continue;
    }
    let trailing: number;
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) trailing = 1;
    else if (lead >= 0xe0 && lead <= 0xef) {
      trailing = 2;
      if (lead === 0xe0) low = 0xa0;
      if (lead === 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      trailing = 3;
      if (lead === 0xf0) low = 0x90;
      if (lead === 0xf4) high = 0x8f;
    } else return i;
    for (let k = 1; k <= trailing; k++) {
      const byte = bytes[i + k];
      if (byte === undefined || byte < (k === 1 ? low : 0x80) || byte > (k === 1 ? high : 0xbf)) return i;
    }
    i += trailing + 1;
  }
  return -1;
}

/**
 * Decodes the bytes of a definition file as UTF-8 (a UTF-8 byte order mark is dropped).
 *
 * @param bytes - the file's content as read from disk or git
 * @param file - its path relative to the config repository root, for messages
 * @returns the text, for {@link parseDefinitionDocument}
 * @throws DefinitionError when the file is over {@link MAX_DEFINITION_BYTES} (checked first),
 *   UTF-16 or UTF-32 (with or without a byte order mark), holds a NUL byte, or is not valid
 *   UTF-8; the problem gives the line and the byte offset
 */
export function decodeDefinitionBytes(bytes: Uint8Array, file: string): string {
  if (bytes.length > MAX_DEFINITION_BYTES) throw new DefinitionError([definitionTooLarge(file)]);
  const at = (offset: number, message: string, cause?: unknown): DefinitionError =>
    new DefinitionError([{ file, line: lineAtByte(bytes, offset), key: '', message }], cause === undefined ? {} : { cause });
  const bom = foreignByteOrderMark(bytes);
  if (bom !== null) throw at(0, `encoded as ${bom} (it starts with that byte order mark); a definition file is UTF-8`);
  const nul = bytes.indexOf(0);
  if (nul !== -1) {
    const utf16 = guessUtf16(bytes);
    throw at(
      nul,
      utf16 === null
        ? `a NUL byte at byte offset ${nul}; a definition file is UTF-8 text`
        : `looks like ${utf16} without a byte order mark (a NUL byte at byte offset ${nul}); a definition file is UTF-8`,
    );
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    const offset = invalidUtf8Offset(bytes);
    if (offset === -1) throw at(0, 'not valid UTF-8', err);
    throw at(offset, `not valid UTF-8 at byte offset ${offset} (byte 0x${(bytes[offset] ?? 0).toString(16).padStart(2, '0')})`, err);
  }
}
