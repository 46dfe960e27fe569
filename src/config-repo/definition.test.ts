import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { isAppError } from '../errors.js';
import { MAX_DEFINITION_BYTES, parseDefinitionFile } from './definition.js';

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
        resources: { memoryBytes: null, cpus: null, pidsLimit: null },
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
        resources: { memoryBytes: null, cpus: null, pidsLimit: null },
        file: FILE,
      },
    ]);
  });

  test('reads timeout, outputTimeout and resources of a build script', () => {
    const [d] = parseDefinitionFile('buildscripts:\n  - a.sh\na.sh:\n  archives: /x\n  artifact: y\n  timeout: 30\n  outputTimeout: 5\n  resources: { memoryMiB: 512, cpus: 1.5, pids: 100 }\n', FILE);
    assert.equal(d?.timeoutSeconds, 30);
    assert.equal(d?.outputTimeoutSeconds, 5);
    assert.deepEqual(d?.resources, { memoryBytes: 512 * 1024 * 1024, cpus: 1.5, pidsLimit: 100 });
    assert.match(invalid('buildscripts:\n  - a.sh\na.sh:\n  archives: /x\n  artifact: y\n  timeout: -1\n'), /a\.sh\.timeout/);
  });

  test('loads the example file of projects-config-repo-example', async () => {
    const file = 'octocat/hello-make/main.yaml';
    const text = await readFile(join(import.meta.dirname, '..', '..', 'projects-config-repo-example', file), 'utf8');
    const definitions = parseDefinitionFile(text, file);
    assert.equal(definitions.length, 1);
    const [hello] = definitions;
    assert.equal(hello?.name, 'hello');
    assert.equal(hello?.script, 'autobuild/build.sh');
    assert.equal(hello?.artifact, 'hello.tar.gz');
    assert.equal(hello?.archives, '/tmp/archives');
    assert.equal(hello?.baseimage, 'autobuilder/debian-build:bookworm');
    assert.deepEqual(hello?.env, { CFLAGS: '-O2 -Wall -Wextra' });
    assert.equal(hello?.incremental, true);
    assert.equal(hello?.file, file);
  });

  test('reads our extensions env and incremental: false', () => {
    const [d] = parseDefinitionFile('buildscripts: [a.sh]\na.sh:\n  archives: /out\n  artifact: x\n  env: { A_B: "1" }\n  incremental: false\n', FILE);
    assert.deepEqual(d?.env, { A_B: '1' });
    assert.equal(d?.incremental, false);
    assert.ok(Object.isFrozen(d?.env));
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
    for (const expected of [/a\.sh\.archives: must be an absolute path/, /a\.sh\.artifact: /, /b\.sh.*bogus/, /c\.sh: required/, /extra: not listed in "buildscripts"/]) {
      assert.ok(
        lines.some((line) => expected.test(line)),
        `${expected} in ${JSON.stringify(lines)}`,
      );
    }
    for (const line of lines) assert.match(line, /^acme\/widget\/main\.yaml:\d+: /);
  });
});
