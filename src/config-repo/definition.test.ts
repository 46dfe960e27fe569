import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { isAppError } from '../errors.js';
import { decodeDefinitionBytes, MAX_DEFINITION_BYTES } from './decode-definition-bytes.js';
import { parseDefinitionDocument, parseDefinitionFile } from './definition.js';
import { DefinitionError } from './definition-error.js';
import { MAX_COLLECTION_ENTRIES, MAX_DEFINITION_DEPTH } from './read-definition-yaml.js';

const FILE = 'acme/widget/main.yaml';

/** The seed's format, exactly as in DESIGN §3. */
const SEED = `buildscripts:
  - autobuild/build-1.sh
  - autobuild/build-2.sh
autobuild/build-1.sh:
  archives: /tmp/archives      # directory in the container where the artifact is found
  artifact: result.tar.gz      # file name of the artifact inside \`archives\` (required)
autobuild/build-2.sh:
  baseimage: debian:bookworm   # image; the server config gives the default
  archives: /tmp/archives
  artifact: result.tar.gz
  tag: special-tag             # suffix that tells this build apart (status context, names)
`;

/** Runs `parseDefinitionFile` expecting DEFINITION_INVALID and returns the message. */
function invalid(text: string, file = FILE): string {
  let message: string | undefined;
  assert.throws(
    () => parseDefinitionFile(text, file),
    (err: unknown) => {
      assert.ok(isAppError(err, 'DEFINITION_INVALID'), `expected DEFINITION_INVALID, got ${String(err)}`);
      message = err.message;
      return true;
    },
  );
  return message ?? '';
}

describe('parseDefinitionFile', () => {
  test("parses the seed's format into one definition per build script, with defaults", () => {
    assert.deepEqual(parseDefinitionFile(SEED, FILE), [
      {
        name: 'autobuild/build-1.sh',
        script: 'autobuild/build-1.sh',
        archives: '/tmp/archives',
        artifact: 'result.tar.gz',
        baseimage: null,
        tag: null,
        env: {},
        incremental: true,
        timeoutSeconds: null,
        outputTimeoutSeconds: null,
        resources: { memoryBytes: null, cpus: null, pidsLimit: null, diskBytes: null },
        runsOn: [],
        retry: 0,
        dockerfile: null,
        params: {},
        caches: { paths: [], maxBytes: null },
        file: FILE,
      },
      {
        name: 'special-tag',
        script: 'autobuild/build-2.sh',
        archives: '/tmp/archives',
        artifact: 'result.tar.gz',
        baseimage: 'debian:bookworm',
        tag: 'special-tag',
        env: {},
        incremental: true,
        timeoutSeconds: null,
        outputTimeoutSeconds: null,
        resources: { memoryBytes: null, cpus: null, pidsLimit: null, diskBytes: null },
        runsOn: [],
        retry: 0,
        dockerfile: null,
        params: {},
        caches: { paths: [], maxBytes: null },
        file: FILE,
      },
    ]);
  });

  test('reads runs-on (labels, sorted, once each) and retry (0 or 1) of a build script', () => {
    const [definition] = parseDefinitionFile(
      ['buildscripts:', '  - build.sh', 'build.sh:', '  archives: /out', '  artifact: a.txt', '  runs-on: [big, arm64, big]', '  retry: 1'].join('\n'),
      FILE,
    );
    assert.ok(definition);
    assert.deepEqual(definition.runsOn, ['arm64', 'big']);
    assert.equal(definition.retry, 1);
    assert.throws(
      () => parseDefinitionFile(['buildscripts:', '  - build.sh', 'build.sh:', '  archives: /out', '  artifact: a.txt', '  retry: 2'].join('\n'), FILE),
      /retry: must be 0 or 1/,
    );
    assert.throws(
      () => parseDefinitionFile(['buildscripts:', '  - build.sh', 'build.sh:', '  archives: /out', '  artifact: a.txt', '  runs-on: ["a b"]'].join('\n'), FILE),
      /must be a worker label/,
    );
  });

  test('reads timeout, outputTimeout and resources of a build script', () => {
    const [d] = parseDefinitionFile(
      'buildscripts:\n  - a.sh\na.sh:\n  archives: /x\n  artifact: y\n  timeout: 30\n  outputTimeout: 5\n  resources: { memoryMiB: 512, cpus: 1.5, pids: 100, diskMiB: 64 }\n',
      FILE,
    );
    assert.equal(d?.timeoutSeconds, 30);
    assert.equal(d.outputTimeoutSeconds, 5);
    assert.deepEqual(d.resources, { memoryBytes: 512 * 1024 * 1024, cpus: 1.5, pidsLimit: 100, diskBytes: 64 * 1024 * 1024 });
    assert.match(invalid('buildscripts:\n  - a.sh\na.sh:\n  archives: /x\n  artifact: y\n  timeout: -1\n'), /a\.sh\.timeout/);
  });

  test('loads the example file of projects-config-repo-example', async () => {
    const file = 'octocat/hello-make/main.yaml';
    const text = await readFile(join(import.meta.dirname, '..', '..', 'projects-config-repo-example', file), 'utf8');
    const definitions = parseDefinitionFile(text, file);
    assert.equal(definitions.length, 1);
    const [hello] = definitions;
    assert.equal(hello?.name, 'hello');
    assert.equal(hello.script, 'autobuild/build.sh');
    assert.equal(hello.artifact, 'hello.tar.gz');
    assert.equal(hello.archives, '/tmp/archives');
    assert.equal(hello.baseimage, 'autobuilder/debian-build:bookworm');
    assert.deepEqual(hello.env, { CFLAGS: '-O2 -Wall -Wextra' });
    assert.equal(hello.incremental, true);
    assert.equal(hello.file, file);
  });

  test('reads our extensions env and incremental: false', () => {
    const [d] = parseDefinitionFile('buildscripts: [a.sh]\na.sh:\n  archives: /out\n  artifact: x\n  env: { A_B: "1" }\n  incremental: false\n', FILE);
    assert.deepEqual(d?.env, { A_B: '1' });
    assert.equal(d.incremental, false);
    assert.ok(Object.isFrozen(d.env));
  });

  test('names the file, the line and the key of a missing artifact', () => {
    const text = 'buildscripts:\n  - autobuild/build-1.sh\nautobuild/build-1.sh:\n  archives: /tmp/archives\n';
    const message = invalid(text, 'file.yaml');
    assert.match(message, /^file\.yaml:[34]: autobuild\/build-1\.sh\.artifact: /m);
  });

  test('refuses a script listed without options, naming it', () => {
    const message = invalid('buildscripts:\n  - a.sh\n  - b.sh\na.sh:\n  archives: /x\n  artifact: y\n');
    assert.match(message, /^acme\/widget\/main\.yaml:\d+: b\.sh: required/m);
    assert.doesNotMatch(message, /: a\.sh/);
  });

  test('refuses a script whose options are empty', () => {
    assert.match(invalid('buildscripts:\n  - a.sh\na.sh:\n'), /^acme\/widget\/main\.yaml:3: a\.sh: /m);
  });

  test('refuses a script named like an Object.prototype member and listed without options as missing its options', () => {
    assert.match(invalid('buildscripts:\n  - constructor\n'), /constructor: required/);
  });

  test('names an unknown key in the options of a script', () => {
    const message = invalid('buildscripts:\n  - a.sh\na.sh:\n  archives: /x\n  artifact: y\n  timeot: 5\n');
    assert.match(message, /^acme\/widget\/main\.yaml:\d+: a\.sh\b.*timeot/m);
  });

  test('gives the line of an unknown option key itself', () => {
    const message = invalid('buildscripts:\n  - a.sh\na.sh:\n  archives: /x\n  artifact: y\n  timeot: 5\n');
    assert.match(message, /^acme\/widget\/main\.yaml:6: /m);
  });

  test('refuses a top-level key not listed in buildscripts, with its line', () => {
    const message = invalid('buildscripts:\n  - a.sh\na.sh:\n  archives: /x\n  artifact: y\nb.sh:\n  archives: /x\n  artifact: y\n');
    assert.match(message, /^acme\/widget\/main\.yaml:7: b\.sh: not listed in "buildscripts"/m);
  });

  for (const script of ['../evil.sh', 'autobuild/../../evil.sh', '/bin/sh', '-x.sh', 'a/./b.sh', 'a//b.sh']) {
    test(`refuses the script path ${JSON.stringify(script)}`, () => {
      const text = `buildscripts:\n  - ${JSON.stringify(script)}\n${JSON.stringify(script)}:\n  archives: /x\n  artifact: y\n`;
      assert.match(invalid(text), /^acme\/widget\/main\.yaml:2: buildscripts\.0: must be a relative path/m);
    });
  }

  test('refuses an artifact with a slash and a relative archives directory', () => {
    const message = invalid('buildscripts: [a.sh]\na.sh:\n  archives: out\n  artifact: ../../etc/passwd\n');
    assert.match(message, /a\.sh\.archives: must be an absolute path/);
    assert.match(message, /a\.sh\.artifact: must be a file name/);
  });

  test('reports the line of malformed YAML', () => {
    const message = invalid('buildscripts:\n  - a.sh\na.sh:\n  archives: /x\n  artifact: [y\n');
    assert.match(message, /^acme\/widget\/main\.yaml:\d+: /m);
  });

  test('reports the line of a duplicate key', () => {
    const message = invalid('buildscripts:\n  - a.sh\na.sh:\n  archives: /x\n  artifact: y\na.sh:\n  archives: /x\n  artifact: z\n');
    assert.match(message, /^acme\/widget\/main\.yaml:6: /m);
  });

  test('refuses a document that is not a mapping', () => {
    assert.match(invalid(''), /buildscripts/);
    assert.match(invalid('- a.sh\n'), /buildscripts/);
    assert.match(invalid('just a string\n'), /buildscripts/);
  });

  test('refuses a file with several YAML documents', () => {
    invalid('buildscripts: [a.sh]\na.sh:\n  archives: /x\n  artifact: y\n---\nother: 1\n');
  });

  test('runs no code for a !!js/function tag and refuses the file', () => {
    const g = globalThis as { autobuilderPwned?: unknown };
    delete g.autobuilderPwned;
    invalid("buildscripts: !!js/function 'function () { globalThis.autobuilderPwned = true }'\n");
    invalid("buildscripts: [a.sh]\na.sh: !!js/function 'function () { globalThis.autobuilderPwned = true }'\n");
    assert.equal(g.autobuilderPwned, undefined);
  });

  test('refuses an unknown tag on an otherwise valid value instead of reading it as a string', () => {
    const message = invalid("buildscripts: [a.sh]\na.sh:\n  archives: /x\n  artifact: !!js/function 'y'\n");
    assert.match(message, /js\/function/);
  });

  test('a __proto__ key does not reach Object.prototype', () => {
    const text = 'buildscripts: [a.sh]\na.sh:\n  archives: /x\n  artifact: y\n__proto__:\n  polluted: yes\n';
    invalid(text);
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  });

  test('refuses an alias bomb quickly with DEFINITION_INVALID', () => {
    // Billion laughs: 9 levels of 9 aliases each would expand to 9^9 strings.
    const lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'];
    for (let i = 1; i <= 9; i++) lines.push(`l${i}: &l${i} [${Array.from({ length: 9 }, () => `*l${i - 1}`).join(', ')}]`);
    const text = `${lines.join('\n')}\nbuildscripts: [a.sh]\na.sh:\n  archives: /x\n  artifact: y\n  env: { A: *l9 }\n`;
    const started = performance.now();
    assert.match(invalid(text), /alias/i);
    assert.ok(performance.now() - started < 1000, 'answered within a second');
  });

  test('refuses two builds with the same tag', () => {
    const text = 'buildscripts:\n  - a.sh\n  - b.sh\na.sh:\n  archives: /x\n  artifact: y\n  tag: same\nb.sh:\n  archives: /x\n  artifact: y\n  tag: same\n';
    assert.match(invalid(text), /^acme\/widget\/main\.yaml:\d+: b\.sh: two builds are named "same"/m);
  });

  test('refuses the same script listed twice', () => {
    assert.match(invalid('buildscripts: [a.sh, a.sh]\na.sh:\n  archives: /x\n  artifact: y\n'), /two builds are named "a\.sh"/);
  });

  test('refuses a file over MAX_DEFINITION_BYTES, naming it', () => {
    const text = `${SEED}${'#'.repeat(MAX_DEFINITION_BYTES)}\n`;
    assert.match(invalid(text), /^acme\/widget\/main\.yaml: larger than/);
  });

  test('counts the limit in bytes, not characters', () => {
    const text = `${SEED}# ${'é'.repeat(Math.ceil(MAX_DEFINITION_BYTES / 2))}\n`;
    assert.ok(text.length < MAX_DEFINITION_BYTES);
    assert.match(invalid(text), /larger than/);
  });

  test('reports every problem of a file in the one error', () => {
    const text = [
      'buildscripts:',
      '  - a.sh',
      '  - b.sh',
      '  - c.sh',
      'a.sh:',
      '  archives: relative',
      'b.sh:',
      '  archives: /x',
      '  artifact: y',
      '  bogus: 1',
      'extra: 1',
      '',
    ].join('\n');
    const lines = invalid(text).split('\n');
    for (const expected of [
      /a\.sh\.archives: must be an absolute path/,
      /a\.sh\.artifact: /,
      /b\.sh.*bogus/,
      /c\.sh: required/,
      /extra: not listed in "buildscripts"/,
    ]) {
      assert.ok(
        lines.some((line) => expected.test(line)),
        `${expected} in ${JSON.stringify(lines)}`,
      );
    }
    for (const line of lines) assert.match(line, /^acme\/widget\/main\.yaml:\d+: /);
  });
});

/** Runs `parse` expecting a DefinitionError and returns it. */
function refused(parse: () => unknown): DefinitionError {
  let error: DefinitionError | undefined;
  assert.throws(parse, (err: unknown) => {
    assert.ok(err instanceof DefinitionError, `expected a DefinitionError, got ${String(err)}`);
    error = err;
    return true;
  });
  return error as DefinitionError;
}

/** Time in ms and heap growth in bytes of `run`. */
function measure(run: () => void): { ms: number; heapBytes: number } {
  const heapBefore = process.memoryUsage().heapUsed;
  const started = performance.now();
  run();
  return { ms: performance.now() - started, heapBytes: process.memoryUsage().heapUsed - heapBefore };
}

const VALID = 'buildscripts: [a.sh]\na.sh:\n  archives: /x\n  artifact: y\n';

describe('dockerfile, context and buildArgs', () => {
  const one = (options: string) => parseDefinitionFile(`buildscripts: [b.sh]\nb.sh:\n  archives: /out\n  artifact: x\n${options}`, FILE)[0];

  test('a Dockerfile of the built commit, its context defaulting to its directory', () => {
    assert.deepEqual(one('  dockerfile: ci/env/Dockerfile\n')?.dockerfile, { source: 'commit', path: 'ci/env/Dockerfile', context: 'ci/env', buildArgs: {} });
    assert.deepEqual(one('  dockerfile: Dockerfile\n')?.dockerfile, { source: 'commit', path: 'Dockerfile', context: '.', buildArgs: {} });
  });

  test('a Dockerfile of the config repository, with a wider context and build arguments', () => {
    const d = one('  dockerfile: config:envs/go/Dockerfile\n  context: envs\n  buildArgs: { GO_VERSION: "1.22", _X: "" }\n');
    assert.deepEqual(d?.dockerfile, { source: 'config', path: 'envs/go/Dockerfile', context: 'envs', buildArgs: { GO_VERSION: '1.22', _X: '' } });
    assert.equal(d.baseimage, null);
  });

  test('refuses a context that does not hold the Dockerfile, naming the key', () => {
    assert.match(
      invalid('buildscripts: [b.sh]\nb.sh:\n  archives: /out\n  artifact: x\n  dockerfile: ci/Dockerfile\n  context: other\n'),
      /:6: b\.sh\.context: must hold the Dockerfile ci\/Dockerfile/,
    );
  });

  for (const path of ['../Dockerfile', '/etc/Dockerfile', 'config:../x/Dockerfile', 'a/../../Dockerfile', 'config:', '.', 'a//Dockerfile']) {
    test(`refuses the dockerfile ${JSON.stringify(path)}`, () => {
      assert.match(
        invalid(`buildscripts: [b.sh]\nb.sh:\n  archives: /out\n  artifact: x\n  dockerfile: ${JSON.stringify(path)}\n`),
        /b\.sh\.dockerfile: must be a path/,
      );
    });
  }

  test('refuses baseimage beside dockerfile, and context or buildArgs without dockerfile', () => {
    assert.match(
      invalid('buildscripts: [b.sh]\nb.sh:\n  archives: /out\n  artifact: x\n  dockerfile: Dockerfile\n  baseimage: debian\n'),
      /b\.sh\.baseimage: give either/,
    );
    const message = invalid('buildscripts: [b.sh]\nb.sh:\n  archives: /out\n  artifact: x\n  context: ci\n  buildArgs: { A: "1" }\n');
    assert.match(message, /b\.sh\.context: goes with "dockerfile" only/);
    assert.match(message, /b\.sh\.buildArgs: goes with "dockerfile" only/);
  });

  test('refuses a build argument that is not a name, or holds a NUL', () => {
    assert.match(invalid('buildscripts: [b.sh]\nb.sh:\n  archives: /out\n  artifact: x\n  dockerfile: Dockerfile\n  buildArgs: { "A B": "1" }\n'), /buildArgs/);
    assert.match(invalid('buildscripts: [b.sh]\nb.sh:\n  archives: /out\n  artifact: x\n  dockerfile: Dockerfile\n  buildArgs: { A: "\\0" }\n'), /NUL/);
  });
});

describe('params', () => {
  const one = (options: string) => parseDefinitionFile(`buildscripts: [b.sh]\nb.sh:\n  archives: /out\n  artifact: x\n${options}`, FILE)[0];
  const bad = (options: string) => invalid(`buildscripts: [b.sh]\nb.sh:\n  archives: /out\n  artifact: x\n${options}`);

  test('reads declarations with default, pattern, values and description; a bare name takes any value', () => {
    const d = one(
      '  params:\n    GOOS: { default: linux, values: [linux, darwin], description: target OS }\n    GOARCH: { default: amd64, pattern: "amd64|arm64" }\n    NOTE:\n    _nonce: {}\n',
    );
    assert.deepEqual(d?.params, {
      GOOS: { default: 'linux', pattern: null, values: ['linux', 'darwin'], description: 'target OS' },
      GOARCH: { default: 'amd64', pattern: 'amd64|arm64', values: null, description: null },
      NOTE: { default: null, pattern: null, values: null, description: null },
      _nonce: { default: null, pattern: null, values: null, description: null },
    });
    assert.deepEqual(one('')?.params, {});
  });

  test('refuses a default its own pattern or values do not allow', () => {
    assert.match(
      bad('  params:\n    GOARCH: { default: sparc, pattern: "amd64|arm64" }\n'),
      /b\.sh\.params\.GOARCH\.default: the default is not allowed: "sparc" does not match/,
    );
    assert.match(bad('  params:\n    GOOS: { default: plan9, values: [linux] }\n'), /GOOS\.default: the default is not allowed: "plan9" is not one of "linux"/);
  });

  test('refuses a default for an opaque parameter', () => {
    assert.match(bad('  params:\n    _nonce: { default: x }\n'), /_nonce\.default: an opaque parameter/);
  });

  test('refuses an invalid name, an invalid pattern, a non-string value and an unknown key', () => {
    assert.match(bad('  params:\n    9LIVES: {}\n'), /must be a parameter name/);
    assert.match(bad('  params:\n    A: { pattern: "(" }\n'), /A\.pattern: not a valid regular expression/);
    assert.match(bad('  params:\n    A: { default: 1.20 }\n'), /A\.default/);
    assert.match(bad('  params:\n    A: { defualt: x }\n'), /defualt/);
  });

  test('refuses a default over 1 KiB and more than 32 parameters', () => {
    assert.match(bad(`  params:\n    A: { default: "${'x'.repeat(1025)}" }\n`), /longer than 1024 bytes/);
    const many = Array.from({ length: 33 }, (_, i) => `    P${i}: {}`).join('\n');
    assert.match(bad(`  params:\n${many}\n`), /33 parameters; at most 32/);
  });
});

describe('DefinitionError', () => {
  test('carries every problem structured, one per line of its message', () => {
    const err = refused(() => parseDefinitionFile('buildscripts: [a.sh]\na.sh:\n  archives: out\n  artifact: y\n  bogus: 1\n', FILE));
    assert.ok(isAppError(err, 'DEFINITION_INVALID'));
    assert.deepEqual(err.problems, [
      { file: FILE, line: 3, key: 'a.sh.archives', message: 'must be an absolute path in the container' },
      { file: FILE, line: 5, key: 'a.sh.bogus', message: 'Unrecognized key: "bogus"' },
    ]);
    assert.equal(err.message, err.problems.map((p) => `${p.file}:${p.line}: ${p.key}: ${p.message}`).join('\n'));
    assert.ok(Object.isFrozen(err.problems) && Object.isFrozen(err.problems[0]));
  });

  test('writes a problem of the whole file as "file: message"', () => {
    const err = new DefinitionError([{ file: FILE, line: null, key: '', message: 'larger than 1 bytes' }]);
    assert.equal(err.message, `${FILE}: larger than 1 bytes`);
    assert.equal(new DefinitionError([{ file: FILE, line: 2, key: '', message: 'm' }]).message, `${FILE}:2: (root): m`);
  });

  test('lists at most 50 problems, the last saying how many more there were', () => {
    const problems = Array.from({ length: 120 }, (_, i) => ({ file: FILE, line: i + 1, key: `k${i}`, message: 'bad' }));
    const err = new DefinitionError(problems);
    assert.equal(err.problems.length, 50);
    assert.equal(err.problems[49]?.message, 'and 71 more problems');
    assert.equal(err.message.split('\n').length, 50);
  });
});

describe('hostile YAML', () => {
  test('refuses a billion-laughs alias bomb in bounded time and memory, naming the alias', (t) => {
    // 10 levels of 10 aliases each: 10^10 strings if expanded.
    const lines = ['l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
    for (let i = 1; i <= 9; i++) lines.push(`l${i}: &l${i} [${Array.from({ length: 10 }, () => `*l${i - 1}`).join(', ')}]`);
    const text = `${lines.join('\n')}\n${VALID}  env: { A: *l9 }\n`;
    let err: DefinitionError | undefined;
    const { ms, heapBytes } = measure(() => {
      err = refused(() => parseDefinitionFile(text, FILE));
    });
    t.diagnostic(`alias bomb: ${ms.toFixed(1)} ms, heap ${(heapBytes / 2 ** 20).toFixed(1)} MiB`);
    assert.ok(ms < 2000, `answered in ${ms} ms`);
    assert.ok(heapBytes < 50 * 2 ** 20, `heap grew ${heapBytes} bytes`);
    assert.equal(err?.problems.length, 1);
    assert.match(err.message, /^acme\/widget\/main\.yaml:4: l3\.\d: aliases stand for more than 10000 values in all/);
  });

  test('refuses an alias bomb of mappings and one hidden in a script list', () => {
    const maps = ['a0: &a0 { k: v }'];
    for (let i = 1; i < 40; i++) maps.push(`a${i}: &a${i} { x: *a${i - 1}, y: *a${i - 1} }`);
    assert.match(refused(() => parseDefinitionFile(`${maps.join('\n')}\n${VALID}`, FILE)).message, /aliases stand for more than/);
    const scripts = ['s0: &s0 [a.sh, a.sh, a.sh, a.sh, a.sh, a.sh, a.sh, a.sh]'];
    for (let i = 1; i < 8; i++) scripts.push(`s${i}: &s${i} [*s${i - 1}, *s${i - 1}, *s${i - 1}, *s${i - 1}, *s${i - 1}, *s${i - 1}, *s${i - 1}, *s${i - 1}]`);
    assert.match(refused(() => parseDefinitionFile(`${scripts.join('\n')}\nbuildscripts: *s7\n`, FILE)).message, /alias/);
  });

  test('refuses more than 100 aliases, an alias inside its own anchor and one before its anchor', () => {
    const many = refused(() => parseDefinitionFile(`x: &x a\nlist: [${Array.from({ length: 101 }, () => '*x').join(', ')}]\n`, FILE));
    assert.deepEqual(many.problems, [{ file: FILE, line: 2, key: 'list.100', message: 'more than 100 aliases' }]);
    assert.match(refused(() => parseDefinitionFile('a: &a [*a]\n', FILE)).message, /^acme\/widget\/main\.yaml:1: a\.0: alias \*a is inside its own anchor$/);
    assert.match(refused(() => parseDefinitionFile('a: *b\nb: &b x\n', FILE)).message, /^acme\/widget\/main\.yaml:1: a: alias \*b has no anchor &b before it$/);
  });

  test('still reads a file that shares options through a few aliases', () => {
    const text = 'buildscripts: [a.sh, b.sh]\na.sh: &opts\n  archives: /x\n  artifact: y\n  env: &env { A: "1" }\nb.sh: *opts\n';
    const [a, b] = parseDefinitionFile(text, FILE);
    assert.deepEqual([a?.name, a?.artifact, a?.env], ['a.sh', 'y', { A: '1' }]);
    assert.deepEqual([b?.name, b?.artifact, b?.env], ['b.sh', 'y', { A: '1' }]);
  });

  for (const [name, text, line, key] of [
    ['a 10,000-deep flow sequence', `${'['.repeat(10_000)}${']'.repeat(10_000)}\n`, 1, ''],
    ['a 10,000-deep flow mapping', `${'{a: '.repeat(10_000)}1${'}'.repeat(10_000)}\n`, 1, ''],
    ['a 10,000-deep block sequence', `${'- '.repeat(10_000)}x\n`, 1, Array.from({ length: 33 }, () => '0').join('.')],
    ['a 10,000-deep flow sequence in an option', `${VALID}  env: ${'['.repeat(10_000)}${']'.repeat(10_000)}\n`, 5, 'a.sh.env'],
    [
      'block mappings nested 400 deep',
      Array.from({ length: 400 }, (_, i) => `${' '.repeat(i)}a:\n`).join(''),
      33,
      Array.from({ length: 33 }, () => 'a').join('.'),
    ],
  ] as const) {
    test(`refuses ${name} with a clean error naming the line and key`, () => {
      let err: DefinitionError | undefined;
      const { ms } = measure(() => {
        err = refused(() => parseDefinitionFile(text, FILE));
      });
      assert.ok(ms < 1000, `answered in ${ms} ms`);
      assert.deepEqual(err?.problems, [{ file: FILE, line, key, message: `lists and mappings nested more than ${MAX_DEFINITION_DEPTH} deep` }]);
    });
  }

  test('reads nesting up to the depth limit', () => {
    // the root mapping is one level: 31 more are allowed, 32 are not
    const nested = (levels: number) => `${VALID}x: ${'['.repeat(levels)}${']'.repeat(levels)}\n`;
    assert.match(
      refused(() => parseDefinitionFile(nested(MAX_DEFINITION_DEPTH - 1), FILE)).message,
      /^acme\/widget\/main\.yaml:5: x: not listed in "buildscripts"$/,
    );
    assert.match(refused(() => parseDefinitionFile(nested(MAX_DEFINITION_DEPTH), FILE)).message, /nested more than 32 deep/);
  });

  test(`refuses a list or mapping of more than ${MAX_COLLECTION_ENTRIES} entries before checking its keys pairwise`, () => {
    let keys = '';
    for (let i = 0; keys.length < MAX_DEFINITION_BYTES - 20; i++) keys += `k${i}: 1\n`;
    let err: DefinitionError | undefined;
    const { ms } = measure(() => {
      err = refused(() => parseDefinitionFile(keys, FILE));
    });
    assert.ok(ms < 2000, `answered in ${ms} ms`);
    assert.match(err?.message ?? '', /^acme\/widget\/main\.yaml:1: \(root\): \d+ entries in one list or mapping; at most 1000$/);
    const scripts = `buildscripts: [${Array.from({ length: MAX_COLLECTION_ENTRIES + 1 }, (_, i) => `s${i}.sh`).join(', ')}]\n`;
    assert.deepEqual(refused(() => parseDefinitionFile(scripts, FILE)).problems, [
      { file: FILE, line: 1, key: 'buildscripts', message: `${MAX_COLLECTION_ENTRIES + 1} entries in one list or mapping; at most 1000` },
    ]);
  });

  test('stops reading a file of garbage after a screenful of syntax errors', () => {
    const text = ']\n'.repeat(100_000);
    let err: DefinitionError | undefined;
    const { ms } = measure(() => {
      err = refused(() => parseDefinitionFile(text, FILE));
    });
    assert.ok(ms < 500, `answered in ${ms} ms`);
    assert.equal(err?.problems.length, 50);
    assert.deepEqual(err.problems[0], { file: FILE, line: 1, key: '', message: 'Unexpected flow-seq-end token in YAML document' });
    assert.equal(err.problems[49]?.message, 'more syntax errors follow; reading stopped');
  });

  test('refuses a 50 MB file by its size before parsing, as text and as bytes', (t) => {
    const text = 'buildscripts: [a.sh]\n'.repeat(Math.ceil((50 * 2 ** 20) / 21));
    const bytes = Buffer.from(text);
    for (const [name, input] of [
      ['text', text],
      ['bytes', bytes],
    ] as const) {
      let err: DefinitionError | undefined;
      const { ms, heapBytes } = measure(() => {
        err = refused(() => parseDefinitionDocument(input, FILE));
      });
      t.diagnostic(`50 MB ${name}: ${ms.toFixed(2)} ms, heap ${(heapBytes / 2 ** 20).toFixed(2)} MiB`);
      assert.ok(ms < 100, `answered in ${ms} ms`);
      assert.ok(heapBytes < 10 * 2 ** 20, `heap grew ${heapBytes} bytes`);
      assert.deepEqual(err?.problems, [{ file: FILE, line: null, key: '', message: `larger than ${MAX_DEFINITION_BYTES} bytes` }]);
    }
    assert.throws(() => decodeDefinitionBytes(Buffer.alloc(MAX_DEFINITION_BYTES + 1, 0x20), FILE), /larger than/);
  });

  for (const [written, yaml] of [
    ['!!js/function', "!!js/function 'function () { return 1 }'"],
    ['!!js/undefined', '!!js/undefined ~'],
    ['!!js/regexp', '!!js/regexp /x/'],
    ['!!python/object:os.system', '!!python/object:os.system [ls]'],
    ['!!python/object/apply:os.system', '!!python/object/apply:os.system [ls]'],
    ['!ruby/object:Gem::Installer', '!ruby/object:Gem::Installer { i: x }'],
    ['!custom', '!custom y'],
    ['!!js/function', "!<tag:yaml.org,2002:js/function> 'x'"],
    ['!!binary', '!!binary aGVsbG8='],
    ['!!set', '!!set { y }'],
    ['!!omap', '!!omap [ { y: 1 } ]'],
    ['!!timestamp', '!!timestamp 2001-12-14'],
  ] as const) {
    test(`refuses the tag ${written}, naming it, the line and the key`, () => {
      const err = refused(() => parseDefinitionFile(`buildscripts: [a.sh]\na.sh:\n  archives: /x\n  artifact: ${yaml}\n`, FILE));
      assert.deepEqual(err.problems, [
        { file: FILE, line: 4, key: 'a.sh.artifact', message: `tag ${written} is not allowed: definitions are plain YAML (the core schema, no custom tags)` },
      ]);
    });
  }

  test('refuses a tag named through a %TAG directive and a tag on the root', () => {
    assert.match(
      refused(() => parseDefinitionFile('%TAG !e! tag:example.com,2000:\n---\nbuildscripts: !e!run [a.sh]\n', FILE)).message,
      /^acme\/widget\/main\.yaml:3: buildscripts: tag tag:example\.com,2000:run is not allowed/,
    );
    assert.match(
      refused(() => parseDefinitionFile(`!!js/object\n${VALID}`, FILE)).message,
      /^acme\/widget\/main\.yaml:1: \(root\): tag !!js\/object is not allowed/,
    );
  });

  test("reads the core schema's own tags", () => {
    const [d] = parseDefinitionFile('buildscripts: !!seq [!!str a.sh]\na.sh: !!map\n  archives: !!str /x\n  artifact: !!str 1\n  timeout: !!int "30"\n', FILE);
    assert.equal(d?.artifact, '1');
    assert.equal(d.timeoutSeconds, 30);
  });

  test('refuses a key that is a list, a mapping or an alias', () => {
    assert.deepEqual(refused(() => parseDefinitionFile(`${VALID}? [x]\n: 1\n`, FILE)).problems, [
      { file: FILE, line: 5, key: '?', message: 'a key must be a plain value, not a list, a mapping or an alias' },
    ]);
    assert.match(refused(() => parseDefinitionFile(`x: &k [a]\n? *k\n: 1\n`, FILE)).message, /:2: \*k: a key must be a plain value/);
  });

  test('names the key of a syntax error inside an option', () => {
    const err = refused(() => parseDefinitionFile(`${VALID}  env: { A: "1", B: "2" ]\n`, FILE));
    assert.ok(
      err.problems.some((p) => p.line === 5 && p.key === 'a.sh.env'),
      JSON.stringify(err.problems),
    );
  });

  test('refuses a NUL character in the text and in an env value', () => {
    assert.match(refused(() => parseDefinitionFile(`${VALID}\0`, FILE)).message, /^acme\/widget\/main\.yaml:5: \(root\): a NUL character/);
    assert.match(refused(() => parseDefinitionFile(`${VALID}  env: { A: "x\\0y" }\n`, FILE)).message, /a\.sh\.env\.A: must not contain a NUL character/);
  });

  test('gives every hostile input a DefinitionError and nothing else', () => {
    // a deterministic fuzz: cut, repeat and splice pieces of the seed and of hostile snippets
    const pieces = [
      SEED,
      '[',
      ']',
      '{',
      '}',
      '&a ',
      '*a ',
      '!!js/function ',
      '- ',
      ': ',
      '? ',
      '\n  ',
      '"',
      "'",
      '|\n',
      '%YAML 1.1\n---\n',
      '\t',
      '#',
      '<<: *a\n',
      '\u00e9',
      '\ufeff',
    ];
    let seed = 42;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 300; round++) {
      let text = '';
      for (let i = random(40); i > 0; i--) text += (pieces[random(pieces.length)] ?? '').repeat(1 + random(3) * random(50));
      try {
        parseDefinitionDocument(text, FILE);
      } catch (err) {
        assert.ok(err instanceof DefinitionError, `${JSON.stringify(text)} threw ${String(err)}`);
        for (const p of err.problems) assert.equal(p.file, FILE);
      }
    }
  });
});

describe('decodeDefinitionBytes', () => {
  test('decodes UTF-8 and drops its byte order mark', () => {
    assert.equal(decodeDefinitionBytes(Buffer.from('a: é\n'), FILE), 'a: é\n');
    assert.equal(decodeDefinitionBytes(Buffer.from('\ufeffa: 1\n'), FILE), 'a: 1\n');
    assert.equal(parseDefinitionFile(Buffer.from(`\ufeff${VALID}  env: { GREETING: "grüß dich" }\n`), FILE)[0]?.env['GREETING'], 'grüß dich');
  });

  for (const [name, bytes, offset, line, hex] of [
    [
      'a Latin-1 byte',
      Buffer.concat([Buffer.from(`${VALID}  env: { A: "caf`), Buffer.from([0xe9]), Buffer.from('" }\n')]),
      VALID.length + '  env: { A: "caf'.length,
      5,
      'e9',
    ],
    ['a truncated sequence at the end', Buffer.concat([Buffer.from('a: b\n'), Buffer.from([0xe2, 0x82])]), 5, 2, 'e2'],
    ['an overlong encoding', Buffer.from([0x61, 0xc0, 0xaf]), 1, 1, 'c0'],
    ['a UTF-16 surrogate', Buffer.from([0x0a, 0x0a, 0xed, 0xa0, 0x80]), 2, 3, 'ed'],
    ['a stray continuation byte', Buffer.from([0x61, 0x3a, 0x20, 0x80]), 3, 1, '80'],
    ['a code point past U+10FFFF', Buffer.from([0xf4, 0x90, 0x80, 0x80]), 0, 1, 'f4'],
  ] as const) {
    test(`refuses ${name}, giving the byte offset and the line`, () => {
      const err = refused(() => decodeDefinitionBytes(bytes, FILE));
      assert.deepEqual(err.problems, [{ file: FILE, line, key: '', message: `not valid UTF-8 at byte offset ${offset} (byte 0x${hex})` }]);
      assert.equal(refused(() => parseDefinitionDocument(bytes, FILE)).message, err.message);
    });
  }

  test('refuses UTF-16 without a byte order mark, either byte order', () => {
    const le = refused(() => decodeDefinitionBytes(Buffer.from(VALID, 'utf16le'), FILE));
    assert.deepEqual(le.problems, [
      { file: FILE, line: 1, key: '', message: 'looks like UTF-16LE without a byte order mark (a NUL byte at byte offset 1); a definition file is UTF-8' },
    ]);
    const be = Buffer.from(VALID, 'utf16le').swap16();
    assert.match(
      refused(() => decodeDefinitionBytes(be, FILE)).message,
      /^acme\/widget\/main\.yaml:1: \(root\): looks like UTF-16BE without a byte order mark \(a NUL byte at byte offset 0\)/,
    );
  });

  test('refuses UTF-16 and UTF-32 with a byte order mark, naming the encoding', () => {
    assert.match(refused(() => decodeDefinitionBytes(Buffer.from(`\ufeff${VALID}`, 'utf16le'), FILE)).message, /encoded as UTF-16LE/);
    assert.match(refused(() => decodeDefinitionBytes(Buffer.from(`\ufeff${VALID}`, 'utf16le').swap16(), FILE)).message, /encoded as UTF-16BE/);
    assert.match(refused(() => decodeDefinitionBytes(Buffer.from([0xff, 0xfe, 0, 0, 0x61, 0, 0, 0]), FILE)).message, /encoded as UTF-32LE/);
  });

  test('refuses a NUL byte in UTF-8 text, giving its offset and line', () => {
    const err = refused(() => decodeDefinitionBytes(Buffer.from(`${VALID}x: "a\0b"\n`), FILE));
    assert.deepEqual(err.problems, [
      { file: FILE, line: 5, key: '', message: `a NUL byte at byte offset ${VALID.length + 5}; a definition file is UTF-8 text` },
    ]);
  });
});
