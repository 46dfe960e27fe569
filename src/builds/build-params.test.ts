import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ParamSpec } from '../config-repo/param-spec.js';
import { isAppError } from '../errors.js';
import { assertRequestParams, checkRequestParams, hasOpaqueParams, resolveParams, toParamEnv, toParamsDigest } from './build-params.js';

const spec = (over: Partial<ParamSpec> = {}): ParamSpec => ({ default: null, pattern: null, values: null, description: null, ...over });
const cross = {
  name: 'cross',
  params: {
    GOOS: spec({ default: 'linux', values: ['linux', 'darwin'] }),
    GOARCH: spec({ default: 'amd64', pattern: 'amd64|arm64' }),
    NOTE: spec(),
    _nonce: spec(),
  },
};
const docs = { name: 'docs', params: { GOOS: spec({ values: ['linux'] }) } };

describe('build parameters', () => {
  test('accepts declared, allowed values', () => {
    assert.deepEqual(checkRequestParams([cross], { GOOS: 'darwin', GOARCH: 'arm64', NOTE: 'anything at all', _nonce: '1' }), []);
  });

  test('names each undeclared, invalid or badly named parameter and why', () => {
    const problems = checkRequestParams([cross], { GOOS: 'plan9', GOARCH: 'arm', EXTRA: '1', 'BAD NAME': 'x', NOTE: 'a\0b', _nonce: 'x'.repeat(1025) });
    assert.deepEqual(
      problems.map((p) => p.name),
      ['GOOS', 'GOARCH', 'EXTRA', 'BAD NAME', 'NOTE', '_nonce'],
    );
    assert.match(problems[0]?.message ?? '', /"plan9" is not one of "linux", "darwin"/);
    assert.match(problems[1]?.message ?? '', /"arm" does not match the pattern "amd64\|arm64"/);
    assert.match(problems[2]?.message ?? '', /not declared by the build \(declared: GOARCH, GOOS, NOTE, _nonce\)/);
    assert.match(problems[3]?.message ?? '', /must be a parameter name/);
    assert.match(problems[4]?.message ?? '', /NUL/);
    assert.match(problems[5]?.message ?? '', /longer than 1024 bytes/);
  });

  test('the pattern must match the whole value', () => {
    assert.equal(checkRequestParams([cross], { GOARCH: 'xamd64' }).length, 1);
    assert.equal(checkRequestParams([cross], { GOARCH: 'amd64x' }).length, 1);
  });

  test('with several builds: declared by one is enough, every declaring build must allow the value', () => {
    assert.deepEqual(checkRequestParams([cross, docs], { GOARCH: 'arm64', GOOS: 'linux' }), []);
    const [problem] = checkRequestParams([cross, docs], { GOOS: 'darwin' });
    assert.match(problem?.message ?? '', /is not one of "linux" \(build docs\)/);
  });

  test('throws PARAMS_INVALID with status 422 naming each', () => {
    assert.throws(
      () => assertRequestParams([cross], { GOOS: 'plan9', EXTRA: '1' }),
      (err: unknown) => isAppError(err, 'PARAMS_INVALID') && err.status === 422 && /GOOS: .*; EXTRA: not declared/.test(err.message),
    );
    assert.doesNotThrow(() => assertRequestParams([cross], {}));
  });

  test("a build gets the given values, else the defaults, only of its definition's parameters", () => {
    assert.deepEqual(resolveParams(cross, undefined), { GOOS: 'linux', GOARCH: 'amd64' });
    assert.deepEqual(resolveParams(cross, { GOARCH: 'arm64', NOTE: 'n', OTHER: 'x' }), { GOOS: 'linux', GOARCH: 'arm64', NOTE: 'n' });
    assert.deepEqual(resolveParams(docs, { GOARCH: 'arm64' }), {});
  });

  test('env, opaque parameters and the digest', () => {
    assert.deepEqual(toParamEnv({ GOOS: 'linux', _nonce: '7' }), { AUTOBUILDER_PARAM_GOOS: 'linux', AUTOBUILDER_PARAM__nonce: '7' });
    assert.equal(hasOpaqueParams({ GOOS: 'linux' }), false);
    assert.equal(hasOpaqueParams({ GOOS: 'linux', _nonce: '7' }), true);
    assert.equal(toParamsDigest({}), null);
    assert.equal(toParamsDigest({ _nonce: '7' }), null, 'opaque parameters are not keyed');
    assert.match(toParamsDigest({ GOOS: 'linux' }) ?? '', /^[0-9a-f]{64}$/);
    assert.equal(toParamsDigest({ GOOS: 'linux', _nonce: '1' }), toParamsDigest({ GOOS: 'linux', _nonce: '2' }));
    assert.equal(toParamsDigest({ A: '1', B: '2' }), toParamsDigest({ B: '2', A: '1' }));
    assert.notEqual(toParamsDigest({ GOOS: 'linux' }), toParamsDigest({ GOOS: 'darwin' }));
  });
});
