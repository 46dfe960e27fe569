import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { simpleGit } from 'simple-git';
import { createGitRepository, type GitRepository } from '../../test/support/git-repository.js';
import { isAppError } from '../errors.js';
import { createCheckout, type Checkout } from './checkout.js';

const IDENTITY = ['-c', 'user.name=autobuilder test', '-c', 'user.email=test@autobuilder.invalid'];

describe('resolving a ref with git ls-remote', () => {
  let repo: GitRepository;
  let checkout: Checkout;
  let commit: string;

  before(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'autobuilder-resolve-'));
    repo = await createGitRepository(join(dir, 'repo'));
    commit = await repo.commit({ 'a.txt': 'a\n' }, 'first');
    const git = simpleGit({ baseDir: repo.dir });
    await git.raw(['tag', 'light', commit]);
    await git.raw([...IDENTITY, 'tag', '--annotate', '--message', 'annotated', 'annotated', commit]);
    checkout = createCheckout({ mirrorsDir: join(dir, 'mirrors') });
  });

  test('answers the commit a branch points at', async () => {
    assert.equal(await checkout.resolveRef({ cloneUrl: repo.url, ref: 'refs/heads/main' }), commit);
  });

  test('answers the commit of a lightweight tag', async () => {
    assert.equal(await checkout.resolveRef({ cloneUrl: repo.url, ref: 'refs/tags/light' }), commit);
  });

  test('answers the commit an annotated tag points at, not the tag object', async () => {
    const tagObject = (await simpleGit({ baseDir: repo.dir }).revparse(['refs/tags/annotated'])).trim();
    assert.notEqual(tagObject, commit);
    assert.equal(await checkout.resolveRef({ cloneUrl: repo.url, ref: 'refs/tags/annotated' }), commit);
  });

  test('throws NOT_FOUND for a ref the repository does not have', async () => {
    await assert.rejects(checkout.resolveRef({ cloneUrl: repo.url, ref: 'refs/tags/missing' }), (err: unknown) => isAppError(err, 'NOT_FOUND'));
  });
});
