import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { before, describe, test } from 'node:test';
import { createConfigRepository, type ConfigRepository } from '../src/config-repo/config-repository.js';
import { parseDefinitionDocument } from '../src/config-repo/definition.js';
import { createLogger } from '../src/logger.js';

/** The example config repository the embedded defaults and `npm run demo` use. */
const EXAMPLE = join(import.meta.dirname, '..', 'projects-config-repo-example');
const REPO = 'octocat/hello-make';

/** Every `.yaml` file of the example, as a `/`-separated path relative to its root. */
async function exampleFiles(): Promise<string[]> {
  const entries = await readdir(EXAMPLE, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.yaml'))
    .map((e) => relative(EXAMPLE, join(e.parentPath, e.name)).split(sep).join('/'))
    .sort();
}

describe('projects-config-repo-example', () => {
  let repo: ConfigRepository;
  /** `[file, build name]` of every build a ref runs, and why nothing runs when nothing does. */
  const runs = async (ref: string): Promise<{ builds: [string, string][]; reason: string | null }> => {
    const lookup = await repo.lookup({ owner: 'octocat', repo: 'hello-make', ref });
    return { builds: lookup.definitions.map((d) => [d.file, d.name]), reason: lookup.reason };
  };

  before(async () => {
    repo = createConfigRepository({ source: { kind: 'directory', path: EXAMPLE }, log: createLogger({ level: 'silent' }) });
    await repo.refresh();
  });

  test('has a definition file for each feature it documents, and every one validates', async () => {
    const files = await exampleFiles();
    assert.deepEqual(files, [
      `${REPO}/checks.yaml`,
      `${REPO}/feature-branches.yaml`,
      `${REPO}/main.yaml`,
      `${REPO}/release-tags.yaml`,
      `${REPO}/release/1.x.yaml`,
    ]);
    for (const file of files) {
      // read as bytes, as the config repository does
      const doc = parseDefinitionDocument(await readFile(join(EXAMPLE, file)), file);
      assert.ok(doc.definitions.length > 0, file);
    }
  });

  test('main runs main.yaml alone: the build of the demo', async () => {
    const lookup = await repo.lookup({ owner: 'octocat', repo: 'hello-make', ref: 'refs/heads/main' });
    assert.equal(lookup.reason, null);
    assert.deepEqual(
      lookup.definitions.map((d) => ({
        file: d.file,
        name: d.name,
        script: d.script,
        baseimage: d.baseimage,
        archives: d.archives,
        artifact: d.artifact,
        env: d.env,
        incremental: d.incremental,
      })),
      [
        {
          file: `${REPO}/main.yaml`,
          name: 'hello',
          script: 'autobuild/build.sh',
          baseimage: 'autobuilder/debian-build:bookworm',
          archives: '/tmp/archives',
          artifact: 'hello.tar.gz',
          env: { CFLAGS: '-O2 -Wall -Wextra' },
          incremental: true,
        },
      ],
    );
  });

  test('release/1.x runs the file in the subdirectory release/, with every option, and not the glob file that also matches it', async () => {
    const lookup = await repo.lookup({ owner: 'octocat', repo: 'hello-make', ref: 'refs/heads/release/1.x' });
    const [release, deb, test] = lookup.definitions;
    assert.equal(lookup.definitions.length, 3);
    for (const d of lookup.definitions) assert.equal(d.file, `${REPO}/release/1.x.yaml`);
    assert.deepEqual(
      { name: release?.name, tag: release?.tag, env: release?.env, incremental: release?.incremental },
      { name: 'release', tag: 'release', env: { CFLAGS: '-O2 -g', RELEASE_LINE: '1.x', JOBS: '4' }, incremental: true },
    );
    assert.deepEqual(
      {
        name: deb?.name,
        baseimage: deb?.baseimage,
        artifact: deb?.artifact,
        incremental: deb?.incremental,
        timeoutSeconds: deb?.timeoutSeconds,
        outputTimeoutSeconds: deb?.outputTimeoutSeconds,
        resources: deb?.resources,
      },
      {
        name: 'deb',
        baseimage: 'debian:bookworm',
        artifact: 'hello_1.x_amd64.deb',
        incremental: false,
        timeoutSeconds: 1800,
        outputTimeoutSeconds: 300,
        resources: { memoryBytes: 2048 * 2 ** 20, cpus: 2, pidsLimit: 512, diskBytes: null },
      },
    );
    // no tag: named by its script path
    assert.deepEqual(
      [test?.name, test?.tag, test?.resources],
      ['autobuild/test.sh', null, { memoryBytes: 512 * 2 ** 20, cpus: 0.5, pidsLimit: null, diskBytes: null }],
    );
  });

  test('a branch without a file of its own runs every glob file that matches, in path order', async () => {
    assert.deepEqual((await runs('refs/heads/feature/login')).builds, [
      [`${REPO}/checks.yaml`, 'check'],
      [`${REPO}/feature-branches.yaml`, 'feature'],
    ]);
    assert.deepEqual((await runs('refs/heads/fix/typo')).builds, [[`${REPO}/feature-branches.yaml`, 'feature']]);
    assert.deepEqual((await runs('refs/heads/release/2.x')).builds, [[`${REPO}/checks.yaml`, 'check']]);
    assert.deepEqual((await runs('refs/heads/develop')).builds, [[`${REPO}/checks.yaml`, 'check']]);
  });

  test('a tag v1.2.3 runs the file with on.tags', async () => {
    const lookup = await repo.lookup({ owner: 'octocat', repo: 'hello-make', ref: 'refs/tags/v1.2.3' });
    assert.deepEqual(
      lookup.definitions.map((d) => [d.file, d.name, d.incremental]),
      [
        [`${REPO}/release-tags.yaml`, 'dist', false],
        [`${REPO}/release-tags.yaml`, 'docs', false],
      ],
    );
  });

  test('a branch that matches nothing runs nothing, and says why', async () => {
    for (const branch of ['experiment', 'feature/login/v2', 'feature-branches', 'v1.2.3']) {
      const { builds, reason } = await runs(`refs/heads/${branch}`);
      assert.deepEqual(builds, [], branch);
      assert.ok(reason?.includes(branch), `${branch}: ${reason}`);
    }
  });

  test('branch globs and branch files never match tags', async () => {
    for (const tag of ['feature/login', 'develop', 'main', 'release/1.x', 'v1/beta']) {
      const { builds, reason } = await runs(`refs/tags/${tag}`);
      assert.deepEqual(builds, [], tag);
      assert.match(reason ?? '', /on\.tags/, tag);
    }
  });
});
