import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { examplePayloads } from '../../test/support/webhook-delivery.js';
import { toBuildRequest } from './to-build-request.js';

const SHA = '6113728f27ae82c7b1a177c8d03f9e96e0adf246';

/** GitHub's example push of refs/heads/master (not deleted). */
function branchPush(): Record<string, unknown> {
  const found = examplePayloads('push').find((p) => p['ref'] === 'refs/heads/master' && p['deleted'] === false);
  assert.ok(found, 'the examples hold a push of refs/heads/master');
  return found;
}

/** `branchPush()` with its repository's fields replaced by `changes`. */
function withRepository(changes: Record<string, unknown>): Record<string, unknown> {
  const payload = branchPush();
  return { ...payload, repository: { ...(payload['repository'] as Record<string, unknown>), ...changes } };
}

describe('toBuildRequest', () => {
  test('maps every example push to a build request or ignores it with a reason', () => {
    const pushes = examplePayloads('push');
    assert.ok(pushes.length > 0);
    for (const payload of pushes) {
      const outcome = toBuildRequest('push', payload, 'delivery-1');
      if (payload['deleted'] === true) {
        assert.equal(outcome.kind, 'ignored', `${String(payload['ref'])} deleted`);
        assert.match(outcome.reason, /deleted/);
      } else {
        assert.equal(outcome.kind, 'build', `${String(payload['ref'])} pushed`);
        assert.equal(outcome.request.ref, payload['ref']);
      }
    }
  });

  test('maps the branch push example onto owner, repository, ref, sha and clone URL', () => {
    const payload = branchPush();
    assert.deepEqual(toBuildRequest('push', payload, 'delivery-1'), {
      kind: 'build',
      request: {
        owner: 'Codertocat',
        repo: 'Hello-World',
        ref: 'refs/heads/master',
        sha: SHA,
        tree: (payload['head_commit'] as { tree_id: string }).tree_id,
        cloneUrl: 'https://github.com/Codertocat/Hello-World.git',
        defaultBranch: 'master',
        deliveryId: 'delivery-1',
      },
    });
    assert.equal(payload['after'], SHA);
  });

  test('maps the tag push example onto a build request of the tag ref', () => {
    const payload = examplePayloads('push').find((p) => p['ref'] === 'refs/tags/simple-tag' && p['deleted'] === false);
    assert.ok(payload);
    const outcome = toBuildRequest('push', payload, null);
    assert.equal(outcome.kind, 'build');
    assert.equal(outcome.request.ref, 'refs/tags/simple-tag');
    assert.equal(outcome.request.deliveryId, null);
  });

  test('answers every example ping with kind ping and its zen', () => {
    const pings = examplePayloads('ping');
    assert.ok(pings.length > 0);
    for (const payload of pings) {
      assert.deepEqual(toBuildRequest('ping', payload, 'd'), { kind: 'ping', zen: payload['zen'] });
    }
  });

  test('answers a ping without zen with zen null', () => {
    assert.deepEqual(toBuildRequest('ping', { hook_id: 1 }, 'd'), { kind: 'ping', zen: null });
  });

  test('ignores an issues event with a reason', () => {
    const [issue] = examplePayloads('issues');
    assert.ok(issue);
    const outcome = toBuildRequest('issues', issue, 'd');
    assert.equal(outcome.kind, 'ignored');
    assert.match(outcome.reason, /issues/);
  });

  const hostile: [string, string, unknown][] = [
    ["full_name '../x/y'", 'push', withRepository({ full_name: '../x/y' })],
    ["full_name '../x'", 'push', withRepository({ full_name: '../x' })],
    ["full_name 'a/..'", 'push', withRepository({ full_name: 'a/..' })],
    ['full_name without a slash', 'push', withRepository({ full_name: 'Hello-World' })],
    ['full_name that is not a string', 'push', withRepository({ full_name: ['a', 'b'] })],
    ['no clone_url', 'push', withRepository({ clone_url: null })],
    ['repository that is not an object', 'push', { ...branchPush(), repository: 'Codertocat/Hello-World' }],
    ["ref 'refs/heads/a..b'", 'push', { ...branchPush(), ref: 'refs/heads/a..b' }],
    ["ref 'refs/heads/-x'", 'push', { ...branchPush(), ref: 'refs/heads/-x' }],
    ['a pull request ref', 'push', { ...branchPush(), ref: 'refs/pull/1/head' }],
    ['ref that is not a string', 'push', { ...branchPush(), ref: 42 }],
    ['no ref', 'push', { ...branchPush(), ref: undefined }],
    ['after that is not hex', 'push', { ...branchPush(), after: 'not-a-sha; rm -rf /' }],
    ['after in upper case', 'push', { ...branchPush(), after: SHA.toUpperCase() }],
    ['after of all zeros', 'push', { ...branchPush(), after: '0'.repeat(40) }],
    ['after that is not a string', 'push', { ...branchPush(), after: 1 }],
    ['a payload that is null', 'push', null],
    ['a payload that is an array', 'push', [branchPush()]],
    ['a payload that is a string', 'push', 'push'],
    ['a payload that is a number', 'ping', 1],
    ['an event name of 10 kB', 'x'.repeat(10_000), branchPush()],
  ];
  for (const [what, event, payload] of hostile) {
    test(`ignores a delivery with ${what}, with a reason, without throwing`, () => {
      const outcome = toBuildRequest(event, payload, 'd');
      assert.equal(outcome.kind, 'ignored');
      assert.ok(outcome.reason.length > 0 && outcome.reason.length < 500, 'a short reason');
    });
  }

  test('never throws on a push with prototype-looking keys', () => {
    const payload = JSON.parse(
      `{"ref":"refs/heads/main","after":"${SHA}","__proto__":{"deleted":true},"repository":{"full_name":"a/b","clone_url":"https://x/a/b.git","__proto__":{"x":1}}}`,
    ) as unknown;
    const outcome = toBuildRequest('push', payload, 'd');
    assert.equal(outcome.kind, 'build');
  });
});

describe('toBuildRequest of a tag push', () => {
  test('builds the commit an annotated tag points at, not the tag object', () => {
    const payload = examplePayloads('push').find((p) => p['ref'] === 'refs/tags/simple-tag' && p['deleted'] === false);
    assert.ok(payload);
    const headCommit = payload['head_commit'] as Record<string, unknown>;
    const tagObject = 'a'.repeat(40);
    const outcome = toBuildRequest('push', { ...payload, after: tagObject }, 'd');
    assert.equal(outcome.kind, 'build');
    assert.equal(outcome.request.sha, headCommit['id']);
    assert.equal(outcome.request.tree, headCommit['tree_id']);
  });

  test('builds after when a branch push states another head commit', () => {
    const payload = { ...branchPush(), after: 'b'.repeat(40) };
    const outcome = toBuildRequest('push', payload, 'd');
    assert.equal(outcome.kind, 'build');
    assert.equal(outcome.request.sha, 'b'.repeat(40));
    assert.equal(outcome.request.tree, null);
  });
});

describe('toBuildRequest of create and delete events', () => {
  test('maps every example create of a tag onto a request of refs/tags/<name> whose sha is resolved later', () => {
    const creates = examplePayloads('create');
    assert.ok(creates.length > 0);
    for (const payload of creates) {
      assert.equal(payload['ref_type'], 'tag');
      assert.deepEqual(toBuildRequest('create', payload, 'delivery-2'), {
        kind: 'build',
        request: {
          owner: 'Codertocat',
          repo: 'Hello-World',
          ref: `refs/tags/${String(payload['ref'])}`,
          sha: null,
          tree: null,
          cloneUrl: 'https://github.com/Codertocat/Hello-World.git',
          defaultBranch: 'master',
          deliveryId: 'delivery-2',
        },
      });
    }
  });

  test('ignores the create of a branch: its push event builds it', () => {
    const [example] = examplePayloads('create');
    const outcome = toBuildRequest('create', { ...example, ref: 'feature/x', ref_type: 'branch' }, 'd');
    assert.equal(outcome.kind, 'ignored');
    assert.match(outcome.reason, /push event/);
  });

  test('ignores every example delete with a reason naming the ref', () => {
    const deletes = examplePayloads('delete');
    assert.ok(deletes.length > 0);
    for (const payload of deletes) {
      const outcome = toBuildRequest('delete', payload, 'd');
      assert.equal(outcome.kind, 'ignored');
      assert.match(outcome.reason, /simple-tag/);
    }
  });
});

/** GitHub's example pull_request of `action`, with head and base replaced by `changes`. */
function pullRequest(action: string, changes: { head?: Record<string, unknown>; base?: Record<string, unknown> } = {}): Record<string, unknown> {
  const payload = examplePayloads('pull_request').find((p) => p['action'] === action);
  assert.ok(payload, `the examples hold a pull_request ${action}`);
  const pr = payload['pull_request'] as Record<string, Record<string, unknown>>;
  Object.assign(pr['head'] as object, changes.head ?? {});
  Object.assign(pr['base'] as object, changes.base ?? {});
  return payload;
}

describe('toBuildRequest of pull requests', () => {
  const HEAD = 'ec26c3e57ca3a959ca5aad62de7213c562f8c821';

  test("maps synchronize onto a build of the head sha as refs/pull/<n>/head with the base branch's definitions", () => {
    assert.deepEqual(toBuildRequest('pull_request', pullRequest('synchronize'), 'delivery-3'), {
      kind: 'build',
      request: {
        owner: 'Codertocat',
        repo: 'Hello-World',
        ref: 'refs/pull/2/head',
        sha: HEAD,
        tree: null,
        cloneUrl: 'https://github.com/Codertocat/Hello-World.git',
        defaultBranch: 'master',
        deliveryId: 'delivery-3',
        definitionsRef: 'refs/heads/master',
        pullRequest: 2,
        fromFork: false,
      },
    });
  });

  test('builds every example opened and reopened pull request', () => {
    const examples = examplePayloads('pull_request').filter((p) => p['action'] === 'opened' || p['action'] === 'reopened');
    assert.ok(examples.length > 0);
    for (const payload of examples) {
      const outcome = toBuildRequest('pull_request', payload, 'd');
      assert.equal(outcome.kind, 'build', String(payload['action']));
      assert.equal(outcome.request.ref, `refs/pull/${String(payload['number'])}/head`);
    }
  });

  test('marks a pull request whose head is another repository as from a fork', () => {
    const fork = { full_name: 'mallory/Hello-World', clone_url: 'https://github.com/mallory/Hello-World.git' };
    const outcome = toBuildRequest('pull_request', pullRequest('opened', { head: { ref: 'master', repo: { ...fork } } }), 'd');
    assert.equal(outcome.kind, 'build');
    const request = outcome.request;
    assert.equal(request.fromFork, true);
    assert.equal(request.ref, 'refs/pull/2/head', "a fork's branch named like the base's is still its pull request");
    assert.equal(request.cloneUrl, 'https://github.com/Codertocat/Hello-World.git', 'fetched from the base repository');
  });

  test('marks a pull request whose fork was deleted (head.repo null) as from a fork', () => {
    const outcome = toBuildRequest('pull_request', pullRequest('synchronize', { head: { repo: null } }), 'd');
    assert.equal(outcome.kind, 'build');
    assert.equal(outcome.request.fromFork, true);
  });

  test('maps every example closed pull request onto cancelling its waiting builds', () => {
    const closed = examplePayloads('pull_request').filter((p) => p['action'] === 'closed');
    assert.ok(closed.length > 0);
    for (const payload of closed) {
      assert.deepEqual(toBuildRequest('pull_request', payload, 'd'), {
        kind: 'cancel',
        target: { owner: 'Codertocat', repo: 'Hello-World', pullRequest: 2 },
        reason: 'pull request #2 was closed',
      });
    }
  });

  test('ignores every other example action with a reason naming it', () => {
    const others = examplePayloads('pull_request').filter((p) => !['opened', 'synchronize', 'reopened', 'closed'].includes(String(p['action'])));
    assert.ok(others.length > 0);
    for (const payload of others) {
      const outcome = toBuildRequest('pull_request', payload, 'd');
      assert.equal(outcome.kind, 'ignored', String(payload['action']));
      assert.ok(outcome.reason.includes(String(payload['action'])));
    }
  });

  const hostile: [string, () => unknown][] = [
    ['a number that is not a positive integer', () => ({ ...pullRequest('synchronize'), number: -1 })],
    ['a number that is a string', () => ({ ...pullRequest('synchronize'), number: '2' })],
    ['a number too large for a ref', () => ({ ...pullRequest('synchronize'), number: 1e12 })],
    ['a head sha that is not hex', () => pullRequest('synchronize', { head: { sha: '$(id)' } })],
    ["a base ref '../x'", () => pullRequest('synchronize', { base: { ref: '../x' } })],
    ['no base ref', () => pullRequest('synchronize', { base: { ref: null } })],
    ['no pull_request object', () => ({ ...pullRequest('synchronize'), pull_request: 'x' })],
    ["a repository full_name '../x/y'", () => ({ ...pullRequest('closed'), repository: { full_name: '../x/y', clone_url: 'https://x/y.git' } })],
    ["a create of tag 'a..b'", () => ({ ...examplePayloads('create')[0], ref: 'a..b' })],
    ['a create without ref_type', () => ({ ...examplePayloads('create')[0], ref_type: undefined })],
  ];
  for (const [what, make] of hostile) {
    test(`ignores a delivery with ${what}, with a reason, without throwing`, () => {
      const event = what.startsWith('a create') ? 'create' : 'pull_request';
      const outcome = toBuildRequest(event, make(), 'd');
      assert.equal(outcome.kind, 'ignored');
      assert.ok(outcome.reason.length > 0 && outcome.reason.length < 500, 'a short reason');
    });
  }
});

describe('the tree id of a push', () => {
  const base = () => {
    const push = examplePayloads('push').find((p) => p['deleted'] === false && String(p['ref']).startsWith('refs/heads/')) as Record<string, unknown>;
    return structuredClone(push);
  };

  test('is taken from head_commit when it is the pushed commit', () => {
    const payload = base();
    const outcome = toBuildRequest('push', payload, 'd');
    assert.equal(outcome.kind, 'build');
    const headCommit = payload['head_commit'] as { tree_id: string };
    assert.equal(outcome.request.tree, headCommit.tree_id);
  });

  test('is not taken from a head_commit that is not the pushed commit, nor when malformed', () => {
    const other = base();
    (other['head_commit'] as Record<string, unknown>)['id'] = 'f'.repeat(40);
    const a = toBuildRequest('push', other, 'd');
    assert.equal(a.kind === 'build' ? a.request.tree : 'x', null);
    const malformed = base();
    (malformed['head_commit'] as Record<string, unknown>)['tree_id'] = '../../x';
    const b = toBuildRequest('push', malformed, 'd');
    assert.equal(b.kind === 'build' ? b.request.tree : 'x', null);
  });
});

describe('toBuildRequest of check runs and check suites', () => {
  const example = (event: string, action: string): Record<string, unknown> => {
    const found = examplePayloads(event).find((p) => p['action'] === action);
    assert.ok(found, `the examples hold a ${event} ${action}`);
    return found;
  };
  const withCheckRun = (payload: Record<string, unknown>, changes: Record<string, unknown>) => ({
    ...payload,
    check_run: { ...(payload['check_run'] as Record<string, unknown>), ...changes },
  });

  test('maps the rerequested check run example onto a rebuild of its external_id, with its app and head sha', () => {
    const payload = withCheckRun(example('check_run', 'rerequested'), { external_id: 'mfx1k2p3-9f3a2c1d' });
    assert.deepEqual(toBuildRequest('check_run', payload, 'd-1'), {
      kind: 'rebuild',
      target: {
        kind: 'check_run',
        owner: 'github',
        repo: 'hello-world',
        appId: 2,
        trigger: 'rerequested',
        checkRunId: (payload['check_run'] as { id: number }).id,
        externalId: 'mfx1k2p3-9f3a2c1d',
        headSha: 'd6fde92930d4715a2b49857d24b940956b26d2d3',
      },
    });
  });

  test("maps the rebuild-no-cache button onto a rebuild, and ignores another app's button", () => {
    const payload = example('check_run', 'requested_action');
    const ours = { ...withCheckRun(payload, { external_id: 'b1' }), requested_action: { identifier: 'rebuild-no-cache' } };
    const outcome = toBuildRequest('check_run', ours, null);
    assert.equal(outcome.kind, 'rebuild');
    assert.equal(outcome.target.trigger, 'rebuild-no-cache');
    assert.equal(outcome.target.kind === 'check_run' ? outcome.target.externalId : null, 'b1');
    // the example's own button: lgtm|26764
    const theirs = toBuildRequest('check_run', payload, null);
    assert.equal(theirs.kind, 'ignored');
    assert.match(theirs.reason, /"lgtm\|26764" is not one of autobuilder's/);
  });

  test('ignores created and completed check runs with a reason naming the action', () => {
    for (const action of ['created', 'completed']) {
      const outcome = toBuildRequest('check_run', example('check_run', action), null);
      assert.equal(outcome.kind, 'ignored', action);
      assert.match(outcome.reason, new RegExp(`check_run action "${action}" does not trigger builds`));
    }
  });

  test('maps the rerequested check suite example onto a rebuild of its head sha', () => {
    assert.deepEqual(toBuildRequest('check_suite', example('check_suite', 'rerequested'), null), {
      kind: 'rebuild',
      target: {
        kind: 'check_suite',
        owner: 'Codertocat',
        repo: 'Hello-World',
        appId: 29310,
        trigger: 'rerequested',
        headSha: 'ec26c3e57ca3a959ca5aad62de7213c562f8c821',
      },
    });
  });

  test('ignores requested and completed check suites with a reason naming the action', () => {
    for (const action of ['requested', 'completed']) {
      const outcome = toBuildRequest('check_suite', example('check_suite', action), null);
      assert.equal(outcome.kind, 'ignored', action);
      assert.match(outcome.reason, new RegExp(`check_suite action "${action}" does not trigger builds`));
    }
  });

  test('ignores malformed re-runs with a reason, without throwing, and bounds a long external_id', () => {
    const run = example('check_run', 'rerequested');
    const suite = example('check_suite', 'rerequested');
    const cases: [string, Record<string, unknown>][] = [
      ['check_run', { ...run, check_run: 'nope' }],
      ['check_run', { ...run, repository: { full_name: 'a/b/c', clone_url: 'x' } }],
      ['check_suite', { ...suite, check_suite: { ...(suite['check_suite'] as object), head_sha: 'main' } }],
      ['check_suite', { ...suite, check_suite: null }],
    ];
    for (const [event, payload] of cases) assert.equal(toBuildRequest(event, payload, null).kind, 'ignored', JSON.stringify(payload).slice(0, 80));
    const long = toBuildRequest('check_run', withCheckRun(run, { external_id: 'x'.repeat(10_000), head_sha: 'not a sha', app: null }), null);
    assert.equal(long.kind, 'rebuild');
    assert.ok(long.target.kind === 'check_run' && long.target.externalId.length === 100 && long.target.headSha === null);
    assert.equal(long.target.appId, null);
  });
});

describe('toBuildRequest of installation events', () => {
  test("GitHub's installation examples name the installation, its account and the repositories gained or lost", () => {
    const seen = examplePayloads('installation').map((payload) => {
      const outcome = toBuildRequest('installation', payload, 'd1');
      assert.equal(outcome.kind, 'installation');
      return outcome.change;
    });
    assert.deepEqual(
      seen.find((c) => c.action === 'created'),
      { action: 'created', installationId: 957387, account: 'Codertocat', added: ['Codertocat/Hello-World'], removed: [] },
    );
    assert.deepEqual(
      seen.find((c) => c.action === 'deleted'),
      { action: 'deleted', installationId: 2, account: 'octocat', added: [], removed: ['octocat/Hello-World'] },
    );
    assert.deepEqual(
      seen.find((c) => c.action === 'suspend'),
      { action: 'suspend', installationId: 16598467, account: 'Codertocat', added: [], removed: [] },
    );
  });

  test("GitHub's installation_repositories examples list what was added and removed", () => {
    const changes = examplePayloads('installation_repositories').map((payload) => toBuildRequest('installation_repositories', payload, 'd2'));
    assert.deepEqual(
      changes.map((o) => (o.kind === 'installation' ? [o.change.action, o.change.added, o.change.removed] : o.kind)),
      [
        ['added', ['Codertocat/Space'], []],
        ['added', ['Codertocat/Space'], []],
        ['removed', [], ['octocat/Hello-World']],
      ],
    );
  });

  test('a hostile installation payload yields only well-formed names and no id', () => {
    const outcome = toBuildRequest(
      'installation_repositories',
      { action: 'added', installation: { id: '7; drop', account: 'x' }, repositories_added: [{ full_name: '../../etc' }, { full_name: 'a/b' }, 'c/d'] },
      'd3',
    );
    assert.deepEqual(outcome, { kind: 'installation', change: { action: 'added', installationId: null, account: null, added: ['a/b'], removed: [] } });
  });
});
