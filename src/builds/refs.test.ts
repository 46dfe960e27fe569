import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isAppError } from '../errors.js';
import { assertRepoName, isBuildableRef, isSha, parseBuildRef, parseRef, toLineageBranch, toPullRequestRef } from './refs.js';

const isUnsafeInput = (err: unknown): boolean => isAppError(err, 'UNSAFE_INPUT') && err.status === 400;

describe('parseRef', () => {
  test('accepts a branch ref and gives its short name', () => {
    assert.deepEqual(parseRef('refs/heads/main'), { kind: 'branch', name: 'main' });
  });

  test('keeps the slashes of a branch name', () => {
    assert.deepEqual(parseRef('refs/heads/feature/x'), { kind: 'branch', name: 'feature/x' });
  });

  test('accepts a tag ref with dots', () => {
    assert.deepEqual(parseRef('refs/tags/v1.2.3'), { kind: 'tag', name: 'v1.2.3' });
  });

  test('accepts "$", "(" and ")" as git does: refs never reach a shell', () => {
    assert.deepEqual(parseRef('refs/heads/$(id)'), { kind: 'branch', name: '$(id)' });
  });

  test('accepts a name of 255 characters', () => {
    const name = 'a'.repeat(255);
    assert.deepEqual(parseRef(`refs/heads/${name}`), { kind: 'branch', name });
  });

  const rejected: [string, string][] = [
    ["a name with '..'", 'refs/heads/a..b'],
    ["a name with '..' as a path component", 'refs/heads/feature/../main'],
    ['a name with a space (a shell command substitution)', 'refs/heads/$(touch /tmp/pwn)'],
    ["a name starting with '-' (an option to git)", 'refs/heads/-x'],
    ["a name starting with '.'", 'refs/heads/.hidden'],
    ["a component starting with '.'", 'refs/heads/a/.hidden'],
    ["a name ending in '.lock'", 'refs/heads/x.lock'],
    ["a component ending in '.lock'", 'refs/heads/x.lock/y'],
    ["a name ending in '.'", 'refs/heads/x.'],
    ['a name with a space', 'refs/heads/a b'],
    ["a name ending in '/'", 'refs/heads/x/'],
    ["a name with '//'", 'refs/heads/a//b'],
    ['a ref outside refs/heads and refs/tags', 'refs/notes/x'],
    ['a pull request ref', 'refs/pull/1/head'],
    ['a bare branch name', 'main'],
    ['an empty branch name', 'refs/heads/'],
    ['an empty string', ''],
    ['a name longer than 255 characters', `refs/heads/${'a'.repeat(300)}`],
    ['a name with NUL', 'refs/heads/a\u0000b'],
    ['a name with a newline', 'refs/heads/main\nx'],
    ['a name with a trailing newline', 'refs/heads/main\n'],
    ['a name with DEL', 'refs/heads/a\u007fb'],
    ["a name with '@{'", 'refs/heads/a@{1}'],
    ["the name '@'", 'refs/heads/@'],
    ["a name with '~'", 'refs/heads/a~1'],
    ["a name with '^'", 'refs/heads/a^'],
    ["a name with ':'", 'refs/heads/a:b'],
    ["a name with '?'", 'refs/heads/a?'],
    ["a name with '*'", 'refs/heads/*'],
    ["a name with '['", 'refs/heads/a[b'],
    ['a name with a backslash', 'refs/heads/a\\b'],
    ['a tag with a space', 'refs/tags/v1 2'],
  ];
  for (const [what, ref] of rejected) {
    test(`refuses ${what} with UNSAFE_INPUT`, () => {
      assert.throws(() => parseRef(ref), isUnsafeInput);
      assert.equal(isBuildableRef(ref), false);
    });
  }

  test('caps the ref quoted in the error message', () => {
    const long = `refs/heads/${'x'.repeat(5000)}`;
    assert.throws(
      () => parseRef(long),
      (err: unknown) => isAppError(err, 'UNSAFE_INPUT') && err.message.length < 400,
    );
  });
});

describe('isBuildableRef', () => {
  test('is true for branch and tag refs', () => {
    assert.equal(isBuildableRef('refs/heads/main'), true);
    assert.equal(isBuildableRef('refs/tags/v1'), true);
  });
});

describe('parseBuildRef', () => {
  test('parses a pull request head ref into its number', () => {
    assert.equal(toPullRequestRef(42), 'refs/pull/42/head');
    assert.deepEqual(parseBuildRef('refs/pull/42/head'), { kind: 'pull', name: '42' });
  });

  test('parses branches and tags as parseRef does', () => {
    assert.deepEqual(parseBuildRef('refs/heads/feature/x'), { kind: 'branch', name: 'feature/x' });
    assert.deepEqual(parseBuildRef('refs/tags/v1'), { kind: 'tag', name: 'v1' });
  });

  for (const ref of ['refs/pull/0/head', 'refs/pull/01/head', 'refs/pull/1/merge', 'refs/pull/x/head', 'refs/pull/1/head/x', 'refs/pull/12345678901/head']) {
    test(`refuses ${ref}`, () => {
      assert.throws(
        () => parseBuildRef(ref),
        (err: unknown) => isAppError(err, 'UNSAFE_INPUT'),
      );
    });
  }

  test('is not accepted where only branches and tags are (parseRef)', () => {
    assert.equal(isBuildableRef('refs/pull/42/head'), false);
  });
});

describe('toLineageBranch', () => {
  test('keeps branches, tags and pull requests of the same name apart', () => {
    assert.equal(toLineageBranch('refs/heads/main'), 'branch:main');
    assert.equal(toLineageBranch('refs/tags/main'), 'tag:main');
    assert.equal(toLineageBranch('refs/pull/7/head'), 'pull:7');
  });
});

describe('assertRepoName', () => {
  test('returns a GitHub owner or repository name unchanged', () => {
    for (const name of ['octocat', 'Hello-World', 'a.b', 'my_repo', '.github', 'x'.repeat(100)]) {
      assert.equal(assertRepoName(name, 'repository name'), name);
    }
  });

  for (const [what, value] of [
    ["'..'", '..'],
    ["'.'", '.'],
    ['a name with a slash', 'a/b'],
    ['an empty name', ''],
    ['a name with a space', 'a b'],
    ['a name with NUL', 'a\u0000'],
    ['a name longer than 100 characters', 'x'.repeat(101)],
    ['a name with a newline', 'a\n'],
  ] as const) {
    test(`refuses ${what} with UNSAFE_INPUT`, () => {
      assert.throws(() => assertRepoName(value, 'owner'), isUnsafeInput);
    });
  }

  test('names what was checked in the message', () => {
    assert.throws(() => assertRepoName('..', 'owner'), /invalid owner/);
  });
});

describe('isSha', () => {
  test('is true for 40 lowercase hex characters', () => {
    assert.equal(isSha('0123456789abcdef0123456789abcdef01234567'), true);
  });

  test('is false for anything else', () => {
    for (const value of [
      '0123456789ABCDEF0123456789ABCDEF01234567',
      '0123456789abcdef0123456789abcdef0123456',
      '0123456789abcdef0123456789abcdef012345678',
      'a'.repeat(64),
      '0123456789abcdef0123456789abcdef0123456g',
      '0123456789abcdef0123456789abcdef01234567\n',
      ' 0123456789abcdef0123456789abcdef01234567',
      '',
    ]) {
      assert.equal(isSha(value), false, JSON.stringify(value));
    }
  });
});
