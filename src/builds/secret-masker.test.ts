import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createSecretMasker } from './secret-masker.js';

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
