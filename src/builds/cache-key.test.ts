import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CACHE_INPUT_NAMES, diffCacheInputs, SCRIPT_NOT_YET_READ, toCacheInputs, toCacheKey, toCanonicalJson } from './cache-key.js';

const at = { repository: 'acme/widget' };
const base = {
  tree: 'a'.repeat(40),
  definition: { script: 'autobuild/build.sh', archives: '/tmp/out', artifact: 'result.txt', image: 'autobuilder/busybox:latest', incremental: true },
  imageId: `sha256:${'b'.repeat(64)}`,
  scriptBlob: 'c'.repeat(40),
  env: { A: '1', B: '2' },
};

describe('cache key', () => {
  test('is a sha256 of the inputs and stable', () => {
    const key = toCacheKey(toCacheInputs(base), at);
    assert.match(key, /^[0-9a-f]{64}$/);
    assert.equal(toCacheKey(toCacheInputs(structuredClone(base)), at), key);
  });

  test('changes when any single input but the script changes; the diff names each', () => {
    const key = toCacheKey(toCacheInputs(base), at);
    const variants = {
      tree: { ...base, tree: 'd'.repeat(40) },
      definition: { ...base, definition: { ...base.definition, artifact: 'other.txt' } },
      image: { ...base, imageId: `sha256:${'e'.repeat(64)}` },
      script: { ...base, scriptBlob: 'f'.repeat(40) },
      env: { ...base, env: { A: '1', B: '3' } },
      params: { ...base, params: 'd'.repeat(64) },
    };
    for (const name of CACHE_INPUT_NAMES) {
      const inputs = toCacheInputs(variants[name]);
      if (name === 'script') assert.equal(toCacheKey(inputs, at), key, 'the tree fixes the script: its blob is not keyed');
      else assert.notEqual(toCacheKey(inputs, at), key, `${name} must change the key`);
      assert.deepEqual(diffCacheInputs(toCacheInputs(base), inputs), [name]);
    }
  });

  test('a build decided from a tree id before its script was read has the same key, and its script differs from nothing', () => {
    const unread = toCacheInputs({ ...base, scriptBlob: SCRIPT_NOT_YET_READ });
    assert.equal(toCacheKey(unread, at), toCacheKey(toCacheInputs(base), at));
    assert.deepEqual(diffCacheInputs(toCacheInputs(base), unread), []);
    assert.deepEqual(diffCacheInputs(unread, toCacheInputs({ ...base, scriptBlob: SCRIPT_NOT_YET_READ, tree: 'd'.repeat(40) })), ['tree']);
  });

  test('does not depend on the order of env keys', () => {
    assert.equal(toCacheKey(toCacheInputs({ ...base, env: { B: '2', A: '1' } }), at), toCacheKey(toCacheInputs(base), at));
  });

  test('is not fooled by values that concatenate alike', () => {
    const ab = toCacheKey(toCacheInputs({ ...base, env: { AB: 'C' } }), at);
    const a = toCacheKey(toCacheInputs({ ...base, env: { A: 'BC' } }), at);
    assert.notEqual(ab, a);
    assert.notEqual(
      toCacheKey(toCacheInputs({ ...base, definition: { ...base.definition, archives: '/tmp/ou', artifact: 'tresult.txt' } }), at),
      toCacheKey(toCacheInputs(base), at),
    );
  });

  test('with a scope, is the same only for the same scope and never the unscoped key', () => {
    const inputs = toCacheInputs(base);
    assert.equal(toCacheKey(inputs, { ...at, scope: 'pull/7' }), toCacheKey(structuredClone(inputs), { ...at, scope: 'pull/7' }));
    assert.notEqual(toCacheKey(inputs, { ...at, scope: 'pull/7' }), toCacheKey(inputs, at));
    assert.notEqual(toCacheKey(inputs, { ...at, scope: 'pull/7' }), toCacheKey(inputs, { ...at, scope: 'pull/8' }));
  });

  test('differs between repositories with the same inputs, and ignores the case of the name', () => {
    const inputs = toCacheInputs(base);
    assert.notEqual(toCacheKey(inputs, { repository: 'acceptance-org/twin-a' }), toCacheKey(inputs, { repository: 'other-org/twin-b' }));
    assert.equal(toCacheKey(inputs, { repository: 'Acme/Widget' }), toCacheKey(inputs, at));
    assert.notEqual(toCacheKey(inputs, { repository: 'acme/widget', scope: 'x' }), toCacheKey(inputs, { repository: 'acme/widgetx' }));
  });

  test('parameters are an input only when a build has some: a build without keeps its key', () => {
    const without = toCacheInputs(base);
    assert.equal('params' in without, false);
    assert.equal(toCacheKey(toCacheInputs({ ...base, params: null }), at), toCacheKey(without, at));
    const a = toCacheInputs({ ...base, params: 'a'.repeat(64) });
    const b = toCacheInputs({ ...base, params: 'b'.repeat(64) });
    assert.notEqual(toCacheKey(a, at), toCacheKey(b, at));
    assert.deepEqual(diffCacheInputs(a, b), ['params']);
    assert.deepEqual(diffCacheInputs(without, a), ['params']);
  });

  test('a missing script is an input of its own', () => {
    assert.equal(toCacheInputs({ ...base, scriptBlob: null }).script, 'missing');
  });

  test('canonical JSON sorts keys (RFC 8785)', () => {
    assert.equal(toCanonicalJson({ b: 1, a: [true, null, 'x'] }), '{"a":[true,null,"x"],"b":1}');
  });
});
