import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createPieceMasker, createSecretMasker } from './secret-masker.js';

describe('secret masker', () => {
  test('masks every occurrence of every secret, longest first', () => {
    const mask = createSecretMasker(['hunter22', 'hunter22-long', undefined]);
    assert.equal(mask('a hunter22 b hunter22-long c hunter22'), 'a *** b *** c ***');
  });

  test('leaves text without secrets alone and ignores values too short to mask safely', () => {
    const mask = createSecretMasker(['abc', '']);
    assert.equal(mask('abc abcd'), 'abc abcd');
    assert.equal(createSecretMasker([])('plain'), 'plain');
  });
});

describe('piece masker', () => {
  const secret = 'hunter2-secret';
  const pieces = (text: string, size: number): string[] => {
    const out: string[] = [];
    for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
    return out;
  };
  const run = (text: string, size: number): string[] => {
    const masker = createPieceMasker(createSecretMasker([secret]));
    const parts = pieces(text, size);
    return parts.map((p, i) => masker.piece(p, i === parts.length - 1)).filter((p): p is string => p !== null);
  };

  test('masks a secret that a cut between two pieces splits, at every place of the cut', () => {
    for (let offset = 0; offset < 40; offset++) {
      const line = `${'x'.repeat(offset)}${secret}${'y'.repeat(50)}`;
      const written = run(line, 16);
      assert.ok(
        written.every((w) => !w.includes(secret.slice(0, 4)) || w.includes('***')),
        `offset ${offset}: ${JSON.stringify(written)}`,
      );
      assert.equal(written.join(''), line.replace(secret, '***'), `offset ${offset}`);
    }
  });

  test('writes every character once when there are no secrets', () => {
    const masker = createPieceMasker(createSecretMasker([]));
    assert.deepEqual([masker.piece('abc', false), masker.piece('def', true)], ['abc', 'def']);
  });

  test('keeps back what may start a secret, but at most maxCarry characters', () => {
    const start = `abc${secret.slice(0, 10)}`;
    assert.equal(createPieceMasker(createSecretMasker([secret])).piece(start, false), null);
    assert.equal(createPieceMasker(createSecretMasker([secret]), 8).piece(start, false), start);
  });
});
