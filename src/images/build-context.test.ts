import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, symlink, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { extract } from 'tar-stream';
import { checkContext, isEnvImageTag, packContext, toEnvImageHash, toEnvImageTag, toGitBlobId, type ContextFile } from './build-context.js';
import { baseImagesOf, toForkDockerfile } from './dockerfile-bases.js';
import { listGitContext, readDirectoryContext } from './git-context.js';
import { readGitBlobs } from '../git/read-git-blobs.js';

const file = (path: string, content: string, kind: ContextFile['kind'] = 'file'): ContextFile => ({
  path,
  kind,
  id: toGitBlobId(Buffer.from(content)),
  size: Buffer.byteLength(content),
});
const base = { dockerfile: 'Dockerfile', files: [file('Dockerfile', 'FROM a\n'), file('tool.sh', 'echo\n', 'executable')], buildArgs: { A: '1' }, fork: false };

describe('env image hash', () => {
  test('is a sha256 that names the image, the same for the same inputs in any order', () => {
    const hash = toEnvImageHash(base);
    assert.match(hash, /^[0-9a-f]{64}$/);
    assert.equal(toEnvImageHash({ ...base, files: [...base.files].reverse() }), hash);
    assert.equal(toEnvImageTag(hash), `autobuilder/env:${hash}`);
    assert.ok(isEnvImageTag(toEnvImageTag(hash)));
    assert.ok(!isEnvImageTag('autobuilder/env:latest'));
  });

  test('changes with the Dockerfile, any context file, its kind, its path, the build args and a fork', () => {
    const hash = toEnvImageHash(base);
    const variants = [
      { ...base, files: [file('Dockerfile', 'FROM b\n'), base.files[1] as ContextFile] },
      { ...base, files: [base.files[0] as ContextFile, file('tool.sh', 'echo 2\n', 'executable')] },
      { ...base, files: [base.files[0] as ContextFile, file('tool.sh', 'echo\n', 'file')] },
      { ...base, files: [base.files[0] as ContextFile, file('bin/tool.sh', 'echo\n', 'executable')] },
      { ...base, files: [...base.files, file('extra', '')] },
      { ...base, buildArgs: { A: '2' } },
      { ...base, buildArgs: {} },
      { ...base, dockerfile: 'other/Dockerfile' },
      { ...base, fork: true },
      { ...base, problem: 'the context env has more than 10000 files' },
    ];
    const hashes = new Set(variants.map((v) => toEnvImageHash(v)));
    assert.equal(hashes.size, variants.length);
    assert.ok(!hashes.has(hash));
  });

  test('the blob id is git’s', () => {
    assert.equal(toGitBlobId(Buffer.from('hello\n')), 'ce013625030ba8dba906f756967f9e9ca394464a');
  });
});

describe('checkContext', () => {
  const dockerfile = file('Dockerfile', 'FROM a\n');
  test('accepts a context holding the Dockerfile, with links that stay inside', () => {
    const files = [dockerfile, file('a/link', 'x', 'symlink'), file('b', 'y')];
    assert.equal(checkContext(files, 'Dockerfile', new Map([['a/link', '../b']])), null);
  });
  test('refuses a missing Dockerfile or one that is a link', () => {
    assert.match(checkContext([file('x', '')], 'Dockerfile') ?? '', /the Dockerfile Dockerfile is not in the context/);
    assert.match(checkContext([file('Dockerfile', 'x', 'symlink')], 'Dockerfile', new Map([['Dockerfile', 'x']])) ?? '', /is a symbolic link/);
  });
  for (const target of ['../../etc/passwd', '/etc/passwd', '..', 'a/../../..']) {
    test(`refuses a symbolic link to ${target}`, () => {
      assert.match(checkContext([dockerfile, file('evil', target, 'symlink')], 'Dockerfile', new Map([['evil', target]])) ?? '', /points outside the context/);
    });
  }
  for (const path of ['../x', '/x', 'a/../b', 'a//b', './a']) {
    test(`refuses the context path ${path}`, () => {
      assert.match(checkContext([dockerfile, file(path, '')], 'Dockerfile') ?? '', /context path/);
    });
  }
});

describe('baseImagesOf', () => {
  test('finds every FROM, expanding ARGs (build args first) and skipping scratch and stages', async () => {
    const text = [
      '# escape=`',
      'ARG BASE=autobuilder/busybox',
      'ARG TAG',
      'FROM --platform=linux/amd64 ${BASE}:${TAG:-latest} AS Build',
      'RUN echo a `',
      '  b',
      'FROM build',
      'FROM scratch',
      'from autobuilder/debian-build:bookworm as final',
      'FROM $UNSET_VARIABLE',
    ].join('\n');
    assert.deepEqual(await baseImagesOf(text, {}), [
      { image: 'autobuilder/busybox:latest', line: 4 },
      { image: 'autobuilder/debian-build:bookworm', line: 9 },
    ]);
    assert.deepEqual((await baseImagesOf(text, { BASE: 'other', TAG: '2' }))[0], { image: 'other:2', line: 4 });
  });
});

describe('toForkDockerfile', () => {
  test('sets AUTOBUILDER_FORK_BUILD right after every FROM, after its continuation lines', async () => {
    const text = ['ARG BASE=a', 'FROM ${BASE} \\', '  AS build', 'RUN make', 'FROM b', 'COPY --from=build /x /x', ''].join('\n');
    assert.equal(
      await toForkDockerfile(text),
      [
        'ARG BASE=a',
        'FROM ${BASE} \\',
        '  AS build',
        'ENV AUTOBUILDER_FORK_BUILD=true',
        'RUN make',
        'FROM b',
        'ENV AUTOBUILDER_FORK_BUILD=true',
        'COPY --from=build /x /x',
        '',
      ].join('\n'),
    );
  });
});

describe('context from git and from a directory', () => {
  let dir: string;
  let tree: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'autobuilder-context-'));
    await mkdir(join(dir, 'work/env/sub'), { recursive: true });
    await writeFile(join(dir, 'work/env/Dockerfile'), 'FROM a\n');
    await writeFile(join(dir, 'work/env/sub/tool.sh'), 'echo\n', { mode: 0o755 });
    await symlink('sub/tool.sh', join(dir, 'work/env/link'));
    await writeFile(join(dir, 'work/outside.txt'), 'not in the context\n');
    const git = (...args: string[]) =>
      execFileSync('git', args, {
        cwd: join(dir, 'work'),
        env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' },
      })
        .toString()
        .trim();
    git('init', '--quiet');
    git('add', '-A');
    git('commit', '--quiet', '-m', 'c');
    tree = git('rev-parse', 'HEAD^{tree}');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('lists a directory of a tree with kinds and blob ids, and reads the blobs', async () => {
    const gitDir = join(dir, 'work/.git');
    const listing = await listGitContext(gitDir, tree, 'env', { maxFiles: 100, maxBytes: 1_000_000 });
    assert.equal(listing.problem, null);
    const sorted = [...listing.files].sort((a, b) => a.path.localeCompare(b.path));
    assert.deepEqual(
      sorted.map((f) => [f.path, f.kind]),
      [
        ['Dockerfile', 'file'],
        ['link', 'symlink'],
        ['sub/tool.sh', 'executable'],
      ],
    );
    const blobs = await readGitBlobs(
      gitDir,
      sorted.map((f) => f.id),
    );
    assert.equal(blobs.get(sorted[1]?.id ?? '')?.toString(), 'sub/tool.sh');
    // the same files from disk have the same ids: a context hashes alike from git and from a directory
    const fromDisk = await readDirectoryContext(join(dir, 'work'), 'env', { maxFiles: 100, maxBytes: 1_000_000 });
    assert.equal(fromDisk.problem, null);
    assert.deepEqual(
      [...fromDisk.files].sort((a, b) => a.path.localeCompare(b.path)),
      sorted,
    );
  });

  test('stops at the limits and says so; a directory that is not there is a problem too', async () => {
    const gitDir = join(dir, 'work/.git');
    assert.match((await listGitContext(gitDir, tree, '.', { maxFiles: 2, maxBytes: 1_000_000 })).problem ?? '', /more than 2 files/);
    assert.match((await listGitContext(gitDir, tree, '.', { maxFiles: 100, maxBytes: 10 })).problem ?? '', /more than 10 bytes/);
    assert.match((await listGitContext(gitDir, tree, 'nope', { maxFiles: 100, maxBytes: 100 })).problem ?? '', /the context directory nope is not there/);
    assert.match((await readDirectoryContext(join(dir, 'work'), 'nope', { maxFiles: 100, maxBytes: 100 })).problem ?? '', /is not there/);
    assert.match((await readDirectoryContext(join(dir, 'work'), 'env', { maxFiles: 1, maxBytes: 1_000_000 })).problem ?? '', /more than 1 files/);
  });

  test('packs a context as a tar Docker reads: files with their modes, links as links', async () => {
    const files = [file('Dockerfile', 'FROM a\n'), file('bin/tool', 'echo\n', 'executable'), file('link', 'bin/tool', 'symlink')];
    const contents = new Map([
      ['Dockerfile', Buffer.from('FROM a\n')],
      ['bin/tool', Buffer.from('echo\n')],
      ['link', Buffer.from('bin/tool')],
    ]);
    const seen: string[] = [];
    const tar = extract();
    tar.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => {
        if (Buffer.isBuffer(c)) chunks.push(c);
      });
      stream.on('end', () => {
        const content = header.type === 'symlink' ? header.linkname : Buffer.concat(chunks).toString();
        seen.push(`${header.name} ${header.type} ${header.mode.toString(8)} ${content}`);
        next();
      });
    });
    await new Promise<void>((resolve, reject) => {
      tar.on('finish', () => resolve());
      tar.on('error', reject);
      packContext(files, contents).pipe(tar);
    });
    assert.deepEqual(seen, ['Dockerfile file 644 FROM a\n', 'bin/tool file 755 echo\n', 'link symlink 777 bin/tool']);
  });
});
