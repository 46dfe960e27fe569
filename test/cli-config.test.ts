import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../src/config/index.js';
import type { MatchAnswer } from '../src/config-repo/match-answer.js';
import { createLogger } from '../src/logger.js';
import { startServer, type RunningServer } from '../src/server.js';
import { runCliProcess } from './support/cli-process.js';
import { makeTestDir } from './support/data-dir.js';
import { createGitRepository } from './support/git-repository.js';

/** The example config repository the embedded defaults and the demo use. */
const EXAMPLE = resolve(import.meta.dirname, '..', 'projects-config-repo-example');
const REPO_DIR = 'octocat/hello-make';

interface CheckJson {
  dir: string;
  valid: boolean;
  definitionFiles: number;
  repositories: string[];
  contexts: string[];
  problems: { file: string; line: number | null; key: string; message: string }[];
}

describe('autobuilder config check', () => {
  let tmp: string;
  /** a copy of the example with a YAML syntax error in main.yaml and an unknown key in feature-branches.yaml */
  let broken: string;
  let syntaxLine: number;
  let keyLine: number;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'autobuilder-cli-config-'));
    broken = join(tmp, 'config-repo');
    await cp(EXAMPLE, broken, { recursive: true });
    // line 5: a compact mapping inside a value, which YAML does not allow
    await writeFile(
      join(broken, REPO_DIR, 'main.yaml'),
      'buildscripts:\n  - autobuild/build.sh\nautobuild/build.sh:\n  archives: /tmp/archives\n  artifact: a: b\n',
    );
    syntaxLine = 5;
    const featureFile = join(broken, REPO_DIR, 'feature-branches.yaml');
    const lines = (await readFile(featureFile, 'utf8')).split('\n');
    const at = lines.indexOf('  timeout: 600');
    assert.ok(at > 0, 'the example has the line the test adds a key after');
    lines.splice(at + 1, 0, '  colour: blue');
    keyLine = at + 2;
    await writeFile(featureFile, lines.join('\n'));
  });

  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test('passes on the example config repository with a summary, exit 0', async () => {
    const run = await runCliProcess(['config', 'check', EXAMPLE]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /: valid\n/);
    assert.match(run.stdout, /5 definition files, 1 repository \(octocat\/hello-make\)/);
    assert.match(run.stdout, /8 contexts: .*autobuilder\/hello/);
  });

  test('--json gives the summary and an empty problem list for the example', async () => {
    const run = await runCliProcess(['config', 'check', '--json', EXAMPLE]);
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as CheckJson;
    assert.equal(result.valid, true);
    assert.equal(result.dir, EXAMPLE);
    assert.equal(result.definitionFiles, 5);
    assert.deepEqual(result.repositories, ['octocat/hello-make']);
    assert.deepEqual(result.contexts, [
      'autobuilder/autobuild/test.sh',
      'autobuilder/check',
      'autobuilder/deb',
      'autobuilder/dist',
      'autobuilder/docs',
      'autobuilder/feature',
      'autobuilder/hello',
      'autobuilder/release',
    ]);
    assert.deepEqual(result.problems, []);
  });

  test('reports file:line: key: message for a YAML syntax error and an unknown key, exit 1', async () => {
    const run = await runCliProcess(['config', 'check', broken]);
    assert.equal(run.code, 1, run.stderr);
    const lines = run.stdout.trim().split('\n');
    assert.ok(lines.includes(`${REPO_DIR}/feature-branches.yaml:${keyLine}: autobuild/build.sh.colour: Unrecognized key: "colour"`), run.stdout);
    assert.ok(
      lines.some((l) => l.startsWith(`${REPO_DIR}/main.yaml:${syntaxLine}: `) && /Nested mappings are not allowed/.test(l)),
      run.stdout,
    );
    assert.match(run.stdout, /2 problems in 2 files of .*: the server would refuse this revision/);
  });

  test('--json gives every problem with file, line, key and message', async () => {
    const run = await runCliProcess(['--json', 'config', 'check', broken]);
    assert.equal(run.code, 1, run.stderr);
    const result = JSON.parse(run.stdout) as CheckJson;
    assert.equal(result.valid, false);
    assert.equal(result.definitionFiles, 5);
    assert.deepEqual(
      result.problems.map((p) => [p.file, p.line, p.key]),
      [
        [`${REPO_DIR}/feature-branches.yaml`, keyLine, 'autobuild/build.sh.colour'],
        [`${REPO_DIR}/main.yaml`, syntaxLine, 'autobuild/build.sh.artifact.a'],
      ],
    );
  });

  test('with GITHUB_ACTIONS=true prints ::error annotations with paths from the workspace root', async () => {
    // the config repository is a subdirectory of the checked-out workspace: annotations name the path from its root
    const run = await runCliProcess(['config', 'check', 'config-repo'], { cwd: tmp, env: { GITHUB_ACTIONS: 'true', GITHUB_WORKSPACE: tmp } });
    assert.equal(run.code, 1, run.stderr);
    const annotations = run.stdout.split('\n').filter((l) => l.startsWith('::error '));
    assert.deepEqual(annotations, [
      `::error file=config-repo/${REPO_DIR}/feature-branches.yaml,line=${keyLine},title=autobuild/build.sh.colour::Unrecognized key: "colour"`,
      `::error file=config-repo/${REPO_DIR}/main.yaml,line=${syntaxLine},title=autobuild/build.sh.artifact.a::Nested mappings are not allowed in compact mappings`,
    ]);
  });

  test('checks the working tree of a git checkout, changes not yet committed included, and names HEAD', async () => {
    const repo = await createGitRepository(join(tmp, 'git-checkout'), EXAMPLE);
    const committed = await runCliProcess(['config', 'check', '--json', repo.dir]);
    assert.equal(committed.code, 0, committed.stderr);
    assert.equal((JSON.parse(committed.stdout) as CheckJson & { headSha: string }).headSha, repo.head);
    // an edit the author has not committed yet is what is checked
    await writeFile(join(repo.dir, REPO_DIR, 'checks.yaml'), 'on:\n  branches: [develop]\nbuildscripts: []\n');
    const edited = await runCliProcess(['config', 'check', '--json', repo.dir]);
    assert.equal(edited.code, 1);
    const result = JSON.parse(edited.stdout) as CheckJson & { headSha: string };
    assert.equal(result.headSha, repo.head);
    assert.deepEqual(
      result.problems.map((p) => [p.file, p.line, p.key]),
      [[`${REPO_DIR}/checks.yaml`, 3, 'buildscripts']],
    );
  });

  test('exits 2 when DIR does not exist', async () => {
    const run = await runCliProcess(['config', 'check', join(tmp, 'nowhere')]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /nowhere: no such directory/);
    assert.equal(run.stdout, '');
  });
});

describe('autobuilder config match', () => {
  let server: RunningServer;
  let dataDir: string;

  before(async () => {
    dataDir = await makeTestDir('cli-config-match');
    const config = loadConfig(
      { dataDir, listen: { host: '127.0.0.1', port: 0 }, configRepository: { path: EXAMPLE }, docker: { network: 'none' }, logLevel: 'silent' },
      {},
    );
    server = await startServer(config, { log: createLogger({ level: 'silent' }), webhookSecret: 'match-test-secret' });
  });

  after(async () => {
    await server.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  const matchJson = async (args: string[]): Promise<MatchAnswer> => {
    const run = await runCliProcess(['config', 'match', '--json', ...args]);
    assert.equal(run.code, 0, run.stderr);
    return JSON.parse(run.stdout) as MatchAnswer;
  };

  test('answers offline which builds a ref the example matches would run, and from which file', async () => {
    const answer = await matchJson(['--repo', 'octocat/hello-make', '--ref', 'refs/heads/feature/login', EXAMPLE]);
    assert.equal(answer.reason, null);
    assert.deepEqual(
      answer.wouldRun.map((b) => [b.context, b.file]),
      [
        ['autobuilder/check', `${REPO_DIR}/checks.yaml`],
        ['autobuilder/feature', `${REPO_DIR}/feature-branches.yaml`],
      ],
    );
    assert.equal(answer.candidates.find((c) => c.file === `${REPO_DIR}/main.yaml`)?.matched, false);
  });

  test('a bare name is a branch, and the text names the build and why each file matched', async () => {
    const run = await runCliProcess(['config', 'match', '--repo', 'octocat/hello-make', '--ref', 'main', EXAMPLE]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^octocat\/hello-make refs\/heads\/main /);
    assert.match(run.stdout, /would run 1 build:\n {2}autobuilder\/hello {2}script autobuild\/build\.sh {2}image autobuilder\/debian-build:bookworm/);
    assert.match(run.stdout, /match {2}octocat\/hello-make\/main\.yaml: the file of branch main/);
  });

  test('answers offline that a ref the example does not match runs nothing, and why', async () => {
    const answer = await matchJson(['--repo', 'octocat/hello-make', '--ref', 'refs/tags/nightly', EXAMPLE]);
    assert.deepEqual(answer.wouldRun, []);
    assert.match(answer.reason ?? '', /no file under octocat\/hello-make\/ with on\.tags matching nightly/);
    assert.equal(answer.candidates.find((c) => c.file === `${REPO_DIR}/release-tags.yaml`)?.why, 'on.tags ["v*"] does not match nightly');
  });

  test('gives the same answer offline as the server does with --server', async () => {
    for (const ref of ['refs/heads/main', 'refs/tags/v1.2.0', 'refs/heads/nothing-here']) {
      const offline = await matchJson(['--repo', 'octocat/hello-make', '--ref', ref, EXAMPLE]);
      const online = await matchJson(['--server', '--url', server.url, '--repo', 'octocat/hello-make', '--ref', ref]);
      assert.deepEqual(offline, online, ref);
    }
  });

  test('exits 2 for a ref git would refuse, 1 for a checkout the server would refuse', async () => {
    const bad = await runCliProcess(['config', 'match', '--repo', 'octocat/hello-make', '--ref', 'refs/heads/a..b', EXAMPLE]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /give a branch name \(main\), refs\/heads\/<branch> or refs\/tags\/<tag>/);
    const dir = await mkdtemp(join(tmpdir(), 'autobuilder-cli-match-'));
    try {
      await cp(join(EXAMPLE, REPO_DIR, 'main.yaml'), join(dir, REPO_DIR, 'main.yaml'), { recursive: true });
      await writeFile(join(dir, REPO_DIR, 'checks.yaml'), 'on: {}\n');
      const refused = await runCliProcess(['config', 'match', '--repo', 'octocat/hello-make', '--ref', 'main', dir]);
      assert.equal(refused.code, 1);
      assert.match(refused.stdout, /octocat\/hello-make\/checks\.yaml:1: /);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
