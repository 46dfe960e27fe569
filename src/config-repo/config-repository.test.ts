import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isAppError } from '../errors.js';
import { createLogger } from '../logger.js';
import { createConfigRepository, type ConfigRepository } from './config-repository.js';
import { MAX_DEFINITION_BYTES } from './decode-definition-bytes.js';

const log = createLogger({ level: 'silent' });

const definition = (artifact: string) => `buildscripts:\n  - autobuild/build.sh\nautobuild/build.sh:\n  archives: /tmp/out\n  artifact: ${artifact}\n`;

async function put(root: string, file: string, content: string): Promise<void> {
  await mkdir(dirname(join(root, file)), { recursive: true });
  await writeFile(join(root, file), content);
}

describe('config repository in directory mode', () => {
  let root: string;
  let repo: ConfigRepository;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'autobuilder-config-repo-'));
    repo = createConfigRepository({ source: { kind: 'directory', path: root }, log });
    await put(root, 'acme/widget/main.yaml', definition('main.txt'));
    await put(root, 'acme/widget/x.yaml', definition('x.txt'));
    await put(root, 'acme/widget/release/1.0.yaml', definition('release.txt'));
    await put(root, 'README.md', 'not a definition\n');
    await put(root, 'top.yaml', 'not: a definition (no owner/repo)\n');
    await mkdir(join(root, 'acme/widget/dir.yaml'), { recursive: true });
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test('the first reload activates the directory as a snapshot', async () => {
    const outcome = await repo.reload('start');
    assert.equal(outcome.outcome, 'activated');
    const status = repo.status();
    assert.deepEqual(
      status.active?.files.map((f) => f.file),
      ['acme/widget/main.yaml', 'acme/widget/release/1.0.yaml', 'acme/widget/x.yaml'],
    );
    assert.deepEqual(repo.repositories(), ['acme/widget']);
    assert.ok(Object.isFrozen(status.active));
    assert.equal((await repo.reload('poll')).outcome, 'unchanged');
  });

  test('finds the definitions of a branch in <owner>/<repo>/<branch>.yaml', async () => {
    const found = await repo.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main' });
    assert.equal(found.file, 'acme/widget/main.yaml');
    assert.equal(found.reason, null);
    assert.equal(found.configSha, null);
    assert.deepEqual(
      found.definitions.map((d) => [d.name, d.artifact, d.file]),
      [['autobuild/build.sh', 'main.txt', 'acme/widget/main.yaml']],
    );
  });

  test('reads refs/heads/feature/x from feature/x.yaml and never from x.yaml', async () => {
    const found = await repo.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/heads/feature/x' });
    assert.deepEqual(found.definitions, []);
    assert.equal(found.file, null);
    assert.match(found.reason ?? '', /acme\/widget\/feature\/x\.yaml/);
  });

  test('reads a branch with slashes and dots from its nested file', async () => {
    const found = await repo.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/heads/release/1.0' });
    assert.equal(found.file, 'acme/widget/release/1.0.yaml');
    assert.equal(found.definitions[0]?.artifact, 'release.txt');
  });

  test('gives no definitions and a reason naming the file when it is missing', async () => {
    const found = await repo.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/heads/nothing-here' });
    assert.deepEqual(found.definitions, []);
    assert.equal(found.file, null);
    assert.match(found.reason ?? '', /acme\/widget\/nothing-here\.yaml/);
  });

  test('gives no definitions for an unknown repository', async () => {
    const found = await repo.lookup({ owner: 'someone', repo: 'else', ref: 'refs/heads/main' });
    assert.deepEqual(found.definitions, []);
    assert.match(found.reason ?? '', /no build definitions for someone\/else/);
  });

  test('gives no definitions when the branch file is a directory', async () => {
    const found = await repo.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/heads/dir' });
    assert.deepEqual(found.definitions, []);
    assert.match(found.reason ?? '', /acme\/widget\/dir\.yaml/);
  });

  test('repository names compare case-insensitively, as on GitHub', async () => {
    const found = await repo.lookup({ owner: 'ACME', repo: 'Widget', ref: 'refs/heads/main' });
    assert.equal(found.file, 'acme/widget/main.yaml');
  });

  for (const [what, input] of [
    ["owner '..'", { owner: '..', repo: 'widget', ref: 'refs/heads/main' }],
    ["repository '..'", { owner: 'acme', repo: '..', ref: 'refs/heads/main' }],
    ['an owner with a slash', { owner: 'acme/widget', repo: 'x', ref: 'refs/heads/main' }],
    ["a branch with '..'", { owner: 'acme', repo: 'widget', ref: 'refs/heads/../../../etc/passwd' }],
    ['a ref that is not a branch or tag', { owner: 'acme', repo: 'widget', ref: 'refs/pull/1/head' }],
  ] as const) {
    test(`throws UNSAFE_INPUT for ${what}`, async () => {
      await assert.rejects(repo.lookup(input), (err: unknown) => isAppError(err, 'UNSAFE_INPUT'));
    });
  }

  test('gives no definitions and a reason for a tag ref', async () => {
    const found = await repo.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/tags/main' });
    assert.deepEqual(found.definitions, []);
    assert.equal(found.file, null);
    assert.match(found.reason ?? '', /tag/);
  });
});

describe('config repository in git mode', () => {
  const IDENTITY = ['-c', 'user.name=autobuilder test', '-c', 'user.email=test@autobuilder.invalid', '-c', 'commit.gpgsign=false'];
  let tmp: string;
  let bare: string;
  let work: string;
  let gitDir: string;
  let repo: ConfigRepository;

  const git = (cwd: string, ...args: string[]): string =>
    execFileSync('git', [...IDENTITY, ...args], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  /** Writes `files`, commits them in the work clone, pushes to the bare repository and returns the sha. */
  const commitAndPush = async (files: Record<string, string>, message: string, force = false): Promise<string> => {
    for (const [file, content] of Object.entries(files)) await put(work, file, content);
    git(work, 'add', '--all');
    git(work, 'commit', '--quiet', '--no-verify', ...(force ? ['--amend'] : []), '-m', message);
    git(work, 'push', '--quiet', ...(force ? ['--force'] : []), 'origin', 'main');
    return git(work, 'rev-parse', 'HEAD');
  };

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'autobuilder-config-git-'));
    bare = join(tmp, 'config.git');
    work = join(tmp, 'work');
    gitDir = join(tmp, 'data', 'config-repo.git');
    git(tmp, 'init', '--quiet', '--bare', '--initial-branch=main', bare);
    git(tmp, 'clone', '--quiet', bare, work);
    git(work, 'checkout', '--quiet', '-B', 'main');
    repo = createConfigRepository({ source: { kind: 'git', url: `file://${bare}`, branch: 'main', gitDir, repository: 'acme/config' }, log });
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test('the first reload fetches into a bare repository and lookup reads the pushed definition at its commit', async () => {
    const sha = await commitAndPush({ 'acme/widget/main.yaml': definition('first.txt') }, 'first');
    await repo.refresh();
    assert.ok((await stat(join(gitDir, 'HEAD'))).isFile());
    const found = await repo.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main' });
    assert.equal(found.configSha, sha);
    assert.equal(found.file, 'acme/widget/main.yaml');
    assert.equal(found.definitions[0]?.artifact, 'first.txt');
  });

  test('a lookup before the next reload still sees the old commit', async () => {
    const earlier = await repo.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main' });
    await commitAndPush({ 'acme/widget/main.yaml': definition('not-yet.txt') }, 'not yet');
    const found = await repo.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main' });
    assert.equal(found.configSha, earlier.configSha);
    assert.equal(found.definitions[0]?.artifact, earlier.definitions[0]?.artifact);
  });

  test('a reload after another push activates the new commit and definitions', async () => {
    const sha = await commitAndPush({ 'acme/widget/main.yaml': definition('second.txt'), 'acme/widget/feature/x.yaml': definition('feature.txt') }, 'second');
    await repo.refresh();
    const found = await repo.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main' });
    assert.equal(found.configSha, sha);
    assert.equal(found.definitions[0]?.artifact, 'second.txt');
    const feature = await repo.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/heads/feature/x' });
    assert.equal(feature.definitions[0]?.artifact, 'feature.txt');
    assert.equal(feature.configSha, sha);
  });

  test('a reload follows a force-push and drops the definitions of files the new commit removed', async () => {
    git(work, 'rm', '--quiet', 'acme/widget/feature/x.yaml');
    const sha = await commitAndPush({ 'acme/widget/main.yaml': definition('rewritten.txt') }, 'rewritten', true);
    await repo.refresh();
    const found = await repo.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main' });
    assert.equal(found.configSha, sha);
    assert.equal(found.definitions[0]?.artifact, 'rewritten.txt');
    const feature = await repo.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/heads/feature/x' });
    assert.deepEqual(feature.definitions, []);
    assert.equal(feature.configSha, sha);
  });

  test('a push that breaks one file is refused whole: the last good snapshot stays active', async () => {
    const good = repo.status().active;
    assert.ok(good !== null);
    const bad = await commitAndPush({ 'acme/widget/main.yaml': definition('never.txt'), 'acme/widget/broken.yaml': 'buildscripts:\n  - a.sh\n' }, 'break');
    const outcome = await repo.reload('webhook');
    assert.equal(outcome.outcome, 'rejected');
    assert.equal(outcome.sha, bad);
    assert.deepEqual(outcome.problems, [
      { file: 'acme/widget/broken.yaml', line: 2, key: 'a.sh', message: 'required: the options of this build script (archives, artifact)' },
    ]);
    const status = repo.status();
    assert.equal(status.active, good);
    assert.equal(status.lastErrors?.sha, bad);
    const found = await repo.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main' });
    assert.equal(found.configSha, good.sha);
    assert.equal(found.definitions[0]?.artifact, 'rewritten.txt');
    // the same refused commit is not reported again on the next poll
    assert.equal((await repo.reload('poll')).outcome, 'unchanged');
  });

  test('the next good push activates its snapshot and clears the errors', async () => {
    git(work, 'rm', '--quiet', 'acme/widget/broken.yaml');
    const sha = await commitAndPush({}, 'fix');
    const outcome = await repo.reload('webhook');
    assert.equal(outcome.outcome, 'activated');
    assert.equal(repo.status().lastErrors, null);
    const found = await repo.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main' });
    assert.equal(found.configSha, sha);
    assert.equal(found.definitions[0]?.artifact, 'never.txt');
  });

  test('a file over the size cap and a file that is not UTF-8 refuse the revision, each named', async () => {
    const sha = await commitAndPush({ 'acme/widget/huge.yaml': `${definition('h')}${'#'.repeat(MAX_DEFINITION_BYTES)}\n` }, 'huge');
    await writeFile(join(work, 'acme/widget/latin1.yaml'), Buffer.from([0x23, 0x20, 0xe9, 0x0a]));
    const latin = await commitAndPush({}, 'latin1');
    const outcome = await repo.reload('poll');
    assert.equal(outcome.outcome, 'rejected');
    assert.notEqual(sha, latin);
    assert.deepEqual(
      outcome.problems.map((p) => [p.file, /bytes|UTF-8/.test(p.message)]),
      [
        ['acme/widget/huge.yaml', true],
        ['acme/widget/latin1.yaml', true],
      ],
    );
    git(work, 'rm', '--quiet', 'acme/widget/huge.yaml', 'acme/widget/latin1.yaml');
    await commitAndPush({}, 'clean');
    assert.equal((await repo.reload('poll')).outcome, 'activated');
  });

  test('a fetch that fails keeps the active snapshot and reports the error', async () => {
    const broken = createConfigRepository({
      source: { kind: 'git', url: `file://${tmp}/missing.git`, branch: 'main', gitDir: join(tmp, 'data', 'other.git') },
      log,
    });
    const outcome = await broken.reload('start');
    assert.equal(outcome.outcome, 'failed');
    assert.match(outcome.problems[0]?.message ?? '', /could not be read/);
    const found = await broken.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main' });
    assert.deepEqual(found.definitions, []);
    assert.match(found.reason ?? '', /no valid revision/);
  });

  test('the poll picks up a push whose webhook never came', async () => {
    const sha = await commitAndPush({ 'acme/widget/polled.yaml': definition('polled.txt') }, 'no webhook for this one');
    const activated = new Promise<string>((resolve) => repo.onReload((o) => o.outcome === 'activated' && resolve(`${o.trigger} ${o.sha}`)));
    repo.watch({ pollSeconds: 1 });
    // the poll's timer is unref'd (it never holds a server's process open); this test waits on it
    const keepAlive = setInterval(() => undefined, 100);
    try {
      assert.equal(await activated, `poll ${sha}`);
      assert.equal((await repo.lookup({ owner: 'acme', repo: 'widget', ref: 'refs/heads/polled' })).definitions[0]?.artifact, 'polled.txt');
    } finally {
      clearInterval(keepAlive);
      await repo.close();
    }
  });

  test('a fetch with the token header in its environment (GIT_CONFIG_*) reads the repository', async () => {
    const sha = await commitAndPush({ 'acme/widget/token.yaml': definition('token.txt') }, 'read with a token header');
    const withToken = createConfigRepository({
      source: {
        kind: 'git',
        url: `file://${bare}`,
        branch: 'main',
        gitDir: join(tmp, 'data', 'token.git'),
        env: { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'http.extraHeader', GIT_CONFIG_VALUE_0: 'Authorization: Basic dGVzdA==' },
      },
      log,
    });
    const outcome = await withToken.reload('start');
    assert.equal(outcome.outcome, 'activated', JSON.stringify(outcome.problems));
    assert.equal(outcome.sha, sha);
  });

  test('a URL with credentials is shown and reported without them', async () => {
    const secret = createConfigRepository({
      source: { kind: 'git', url: `https://x-access-token:ghp_SECRET@127.0.0.1:1/acme/config.git`, branch: 'main', gitDir: join(tmp, 'data', 'secret.git') },
      log,
    });
    const outcome = await secret.reload('start');
    assert.equal(outcome.outcome, 'failed');
    const shown = JSON.stringify(secret.status());
    assert.doesNotMatch(shown, /ghp_SECRET/);
    assert.match(shown, /https:\/\/\*\*\*@127\.0\.0\.1:1\/acme\/config\.git/);
  });

  test('a push to the config branch of its repository is recognised; others are not', () => {
    assert.equal(repo.isConfigPush({ ref: 'refs/heads/main', repository: { full_name: 'Acme/Config' } }), true);
    assert.equal(repo.isConfigPush({ ref: 'refs/heads/other', repository: { full_name: 'acme/config' } }), false);
    assert.equal(repo.isConfigPush({ ref: 'refs/heads/main', repository: { full_name: 'acme/widget' } }), false);
    assert.equal(repo.isConfigPush(null), false);
  });
});

describe('matching by on: globs', () => {
  const log = createLogger({ level: 'silent' });
  const definition = (on: string, artifact: string) => `${on}buildscripts:\n  - build.sh\nbuild.sh:\n  archives: /out\n  artifact: ${artifact}\n`;

  const setUp = async (files: Record<string, string>) => {
    const dir = await mkdtemp(join(tmpdir(), 'autobuilder-on-'));
    for (const [path, text] of Object.entries(files)) {
      await mkdir(dirname(join(dir, path)), { recursive: true });
      await writeFile(join(dir, path), text);
    }
    const repo = createConfigRepository({ source: { kind: 'directory', path: dir }, log });
    await repo.reload('start');
    return repo;
  };

  test('a tag matches files by their tag globs, never by branch globs', async () => {
    const repo = await setUp({
      'o/r/releases.yaml': definition("on:\n  tags: ['v*']\n", 'release.tgz'),
      'o/r/branches.yaml': definition("on:\n  branches: ['v*']\n", 'branch.tgz'),
    });
    const tag = await repo.lookup({ owner: 'o', repo: 'r', ref: 'refs/tags/v1.2' });
    assert.deepEqual(
      tag.definitions.map((d) => d.artifact),
      ['release.tgz'],
    );
    const branch = await repo.lookup({ owner: 'o', repo: 'r', ref: 'refs/heads/v1.2' });
    assert.deepEqual(
      branch.definitions.map((d) => d.artifact),
      ['branch.tgz'],
    );
    const none = await repo.lookup({ owner: 'o', repo: 'r', ref: 'refs/tags/other' });
    assert.deepEqual(none.definitions, []);
    assert.match(none.reason ?? '', /on\.tags/);
  });

  test('an exact <branch>.yaml takes precedence over glob files', async () => {
    const repo = await setUp({
      'o/r/main.yaml': definition('', 'exact.tgz'),
      'o/r/all.yaml': definition("on:\n  branches: ['**']\n", 'glob.tgz'),
    });
    assert.deepEqual(
      (await repo.lookup({ owner: 'o', repo: 'r', ref: 'refs/heads/main' })).definitions.map((d) => d.artifact),
      ['exact.tgz'],
    );
    assert.deepEqual(
      (await repo.lookup({ owner: 'o', repo: 'r', ref: 'refs/heads/feature/x' })).definitions.map((d) => d.artifact),
      ['glob.tgz'],
    );
  });

  test('a single * does not cross a slash in a branch name; ** does', async () => {
    const repo = await setUp({ 'o/r/release.yaml': definition("on:\n  branches: ['release/*']\n", 'r.tgz') });
    assert.equal((await repo.lookup({ owner: 'o', repo: 'r', ref: 'refs/heads/release/1.0' })).definitions.length, 1);
    assert.equal((await repo.lookup({ owner: 'o', repo: 'r', ref: 'refs/heads/release/1.0/hotfix' })).definitions.length, 0);
  });

  test('two matching files defining the same build are refused', async () => {
    const repo = await setUp({
      'o/r/a.yaml': definition("on:\n  branches: ['*']\n", 'a.tgz'),
      'o/r/b.yaml': definition("on:\n  branches: ['*']\n", 'b.tgz'),
    });
    await assert.rejects(
      repo.lookup({ owner: 'o', repo: 'r', ref: 'refs/heads/main' }),
      (err: unknown) => isAppError(err, 'DEFINITION_INVALID') && /also defined by/.test(err.message),
    );
  });

  test('an on: key without branches or tags refuses the revision, naming the file, line and key', async () => {
    const repo = await setUp({ 'o/r/bad.yaml': definition('on: {}\n', 'x.tgz') });
    assert.equal(repo.status().active, null);
    assert.deepEqual(
      repo.status().lastErrors?.problems.map((p) => [p.file, p.line, p.key]),
      [['o/r/bad.yaml', 1, 'on']],
    );
  });

  test('the dry run says why each file matched or not', async () => {
    const repo = await setUp({
      'o/r/main.yaml': definition('', 'exact.tgz'),
      'o/r/releases.yaml': definition("on:\n  tags: ['v*']\n", 'release.tgz'),
      'o/r/features.yaml': definition("on:\n  branches: ['feature/*']\n", 'feature.tgz'),
    });
    const found = await repo.lookup({ owner: 'o', repo: 'r', ref: 'refs/heads/feature/a' });
    assert.deepEqual(found.candidates, [
      { file: 'o/r/features.yaml', matched: true, why: 'on.branches ["feature/*"] matches feature/a' },
      { file: 'o/r/main.yaml', matched: false, why: 'the file of branch main only (no "on:")' },
      { file: 'o/r/releases.yaml', matched: false, why: 'has no on.branches' },
    ]);
  });
});

describe('config repository hot reload in directory mode', () => {
  test('the file watcher activates a change, refuses a broken file and drops a deleted one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'autobuilder-watch-'));
    const repo = createConfigRepository({ source: { kind: 'directory', path: dir }, log });
    try {
      await put(dir, 'o/r/main.yaml', definition('one.txt'));
      await repo.reload('start');
      const reloads: string[] = [];
      const next = () => new Promise<string>((resolve) => repo.onReload((o) => resolve(o.outcome)));
      repo.onReload((o) => reloads.push(`${o.trigger}:${o.outcome}`));
      repo.watch({ pollSeconds: 0, debounceMs: 50 });

      let reloaded = next();
      await put(dir, 'o/r/dev.yaml', definition('dev.txt'));
      assert.equal(await reloaded, 'activated');
      assert.equal((await repo.lookup({ owner: 'o', repo: 'r', ref: 'refs/heads/dev' })).definitions[0]?.artifact, 'dev.txt');

      reloaded = next();
      await put(dir, 'o/r/main.yaml', 'buildscripts: [\n');
      assert.equal(await reloaded, 'rejected');
      assert.equal((await repo.lookup({ owner: 'o', repo: 'r', ref: 'refs/heads/main' })).definitions[0]?.artifact, 'one.txt');

      reloaded = next();
      await put(dir, 'o/r/main.yaml', definition('two.txt'));
      assert.equal(await reloaded, 'activated');
      reloaded = next();
      await rm(join(dir, 'o/r/dev.yaml'));
      assert.equal(await reloaded, 'activated');
      assert.deepEqual((await repo.lookup({ owner: 'o', repo: 'r', ref: 'refs/heads/dev' })).definitions, []);
      assert.equal((await repo.lookup({ owner: 'o', repo: 'r', ref: 'refs/heads/main' })).definitions[0]?.artifact, 'two.txt');
      assert.ok(
        reloads.every((r) => r.startsWith('watch:')),
        reloads.join(' '),
      );
    } finally {
      await repo.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
