import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import type { BuildView } from '../src/http/build-view.js';
import { CLI_BIN, runCliProcess, type CliRun } from './support/cli-process.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

const TOKEN = 'cli-builds-api-token-0123456789';

interface BuildsJson {
  builds: BuildView[];
  artifacts?: { build: string; name: string; file: string; digest: string; size: number }[];
}

/**
 * Delivers a signed push of main and waits for its build: the manual API clones a repository
 * from the URL its last webhook gave (else from the configured GitHub, which the tests do not have).
 */
async function pushMain(f: FixtureServer): Promise<void> {
  const sha = f.repo.head as string;
  const delivery = await deliver(f.server.url, {
    event: 'push',
    secret: f.secret,
    payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl: f.cloneUrl }),
  });
  assert.equal(delivery.status, 202, JSON.stringify(delivery.body));
  assert.equal((await f.waitForBuild((b) => b.sha === sha)).state, 'success');
}

const parse = <T>(run: CliRun): T => {
  try {
    return JSON.parse(run.stdout) as T;
  } catch {
    throw new Error(`not one JSON document (exit ${run.code}):\n${run.stdout}\n--- stderr\n${run.stderr}`);
  }
};

describe('the autobuilder CLI against a real server', () => {
  let f: FixtureServer;
  let tmp: string;
  let expected: Buffer;
  let digest: string;
  const env = () => ({ AUTOBUILDER_URL: f.server.url, AUTOBUILDER_API_TOKEN: TOKEN, NO_COLOR: '1' });
  const cli = (args: readonly string[], timeoutMs = 120_000) => runCliProcess(args, { env: env(), timeoutMs });
  const api = async (path: string, init: { method?: string; body?: string } = {}) => {
    const response = await fetch(`${f.server.url}${path}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  const getBuild = async (id: string, wait?: number) =>
    (await api(`/api/builds/${id}${wait === undefined ? '' : `?wait=${wait}`}`)).body as unknown as BuildView;

  before(async () => {
    // one slot: a long build makes the next one queue
    f = await startFixtureServer('cli-builds', { jobConcurrency: 1, api: { token: TOKEN } });
    tmp = join(f.dir, 'cli');
    await mkdir(tmp);
    // the definitions' branches (test/fixtures/config-repo/acme/widget/<branch>.yaml), all at main's commit
    for (const branch of ['long', 'fails', 'pair', 'chatty', 'slow']) await promisify(execFile)('git', ['-C', f.repo.dir, 'branch', branch]);
    await pushMain(f);
    expected = await readFile(join(f.repo.dir, 'message.txt'));
    digest = createHash('sha256').update(expected).digest('hex');
  });
  after(async () => {
    await f.close({ graceMs: 0 });
    // the fixture's data (snapshots included) goes with it
    await rm(f.dir, { recursive: true, force: true }).catch(() => undefined);
  });

  test('build --no-wait returns at once with the queued build; a build behind it says where it waits; cancel ends the first', async () => {
    const started = await cli(['build', '--json', '--no-wait', '--repo', 'acme/widget', '--ref', 'long']);
    assert.equal(started.code, 0, started.stderr);
    const [long] = parse<BuildsJson>(started).builds;
    assert.ok(long !== undefined);
    assert.equal(long.context, 'autobuilder/long');
    // the build sleeps 60 s: it has not ended when the command has
    assert.ok(['queued', 'running'].includes((await getBuild(long.id)).state));

    // `build` of main waits for the one slot the long build holds, and says so
    const target = join(tmp, 'queued-target');
    const child = spawn(process.execPath, [CLI_BIN, 'build', '--repo', 'acme/widget', '--ref', 'main', '--force', '--target', target], {
      env: { ...process.env, ...env(), XDG_CONFIG_HOME: tmp },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    const saidQueued = new Promise<void>((resolve) => {
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString('utf8');
        if (/queued: position 1 of 1, /.test(stderr)) resolve();
      });
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const timeout = setTimeout(() => child.kill(), 120_000);
    try {
      await Promise.race([saidQueued, exited.then(() => assert.fail(`build ended before it queued:\n${stderr}`))]);
      const cancelled = await cli(['cancel', '--json', long.id]);
      assert.equal(cancelled.code, 0, cancelled.stderr);
      assert.equal(parse<BuildView>(cancelled).state, 'cancelled');
      assert.equal(await exited, 0, stderr);
    } finally {
      clearTimeout(timeout);
      child.kill();
    }
    assert.match(stderr, /build \S+ \(autobuilder\/autobuild\/build\.sh\) queued: position 1 of 1, /);
    assert.match(stdout, /success +acme\/widget main [0-9a-f]{10} {2}autobuilder\/autobuild\/build\.sh/);
    assert.deepEqual(await readFile(join(target, 'result.txt')), expected);
    assert.match(stderr, new RegExp(`saved .*result\\.txt \\(${expected.length} bytes, sha256:${digest} verified\\)`));
  });

  test('build --target downloads every artifact, verified, and exits 0; --json prints the builds and the files', async () => {
    const target = join(tmp, 'target');
    const run = await cli(['build', '--json', '--repo', 'acme/widget', '--ref', 'refs/heads/main', '--target', target]);
    assert.equal(run.code, 0, run.stderr);
    const out = parse<BuildsJson>(run);
    assert.equal(out.builds.length, 1);
    assert.equal(out.builds[0]?.state, 'success');
    assert.deepEqual(
      out.artifacts?.map((a) => ({ name: a.name, digest: a.digest, size: a.size, file: a.file })),
      [{ name: 'result.txt', digest, size: expected.length, file: join(target, 'result.txt') }],
    );
    assert.deepEqual(await readdir(target), ['result.txt']);
    assert.deepEqual(await readFile(join(target, 'result.txt')), expected);
  });

  test('a failing build exits 1, with its state in the JSON', async () => {
    const run = await cli(['build', '--json', '--repo', 'acme/widget', '--ref', 'fails']);
    assert.equal(run.code, 1, run.stderr);
    const [build] = parse<BuildsJson>(run).builds;
    assert.equal(build?.state, 'failure');
    assert.equal(build.exitCode, 3);
  });

  test('a ref with two build scripts: build waits for both, downloads the good one, and exits 1 as one failed', async () => {
    const target = join(tmp, 'pair');
    const run = await cli(['build', '--json', '--repo', 'acme/widget', '--ref', 'pair', '--target', target]);
    assert.equal(run.code, 1, run.stderr);
    const out = parse<BuildsJson>(run);
    assert.deepEqual(
      out.builds.map((b) => [b.context, b.state]).sort((x, y) => String(x[0]).localeCompare(String(y[0]))),
      [
        ['autobuilder/autobuild/build.sh', 'success'],
        ['autobuilder/pair-fails', 'failure'],
      ],
    );
    assert.deepEqual(await readFile(join(target, 'result.txt')), expected);
  });

  test('build --follow prints the log as it is written, then the result', async () => {
    const run = await cli(['build', '--follow', '--force', '--repo', 'acme/widget', '--ref', 'chatty']);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.split('\n');
    const first = lines.findIndex((l) => l.startsWith('chatty line 1 of 150'));
    const last = lines.findIndex((l) => l.startsWith('chatty line 150 of 150'));
    assert.ok(first >= 0 && last > first, run.stdout);
    assert.match(run.stdout, /\[autobuilder\] success/);
    assert.match(lines.at(-2) ?? '', /success +acme\/widget chatty /);
  });

  test('logs -f follows a running build and ends when it ends', async () => {
    const triggered = await api('/api/builds', { method: 'POST', body: JSON.stringify({ repo: 'acme/widget', ref: 'refs/heads/chatty', force: true }) });
    assert.equal(triggered.status, 202);
    const [build] = triggered.body['builds'] as BuildView[];
    assert.ok(build !== undefined);
    const startedAt = Date.now();
    const run = await cli(['logs', '-f', build.id]);
    assert.equal(run.code, 0, run.stderr);
    const ended = await getBuild(build.id);
    assert.equal(ended.state, 'success');
    // it was following: the build ended after the command began
    assert.ok(Date.parse(ended.finishedAt ?? '') > startedAt, `${ended.finishedAt} after ${new Date(startedAt).toISOString()}`);
    assert.match(run.stdout, /chatty line 150 of 150/);
    assert.match(run.stdout, /\[autobuilder\] success/);

    const plain = await cli(['logs', build.id]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stdout, run.stdout);
    const json = parse<{ build: BuildView; log: string }>(await cli(['logs', '--json', build.id]));
    assert.equal(json.build.id, build.id);
    assert.equal(json.log, run.stdout);
  });

  test('status, list, rebuild and artifact get answer in JSON that parses', async () => {
    const list = parse<{ builds: BuildView[] }>(await cli(['list', '--json', '--repo', 'acme/widget', '--ref', 'main', '--state', 'success', '--limit', '2']));
    assert.equal(list.builds.length, 2);
    assert.ok(list.builds.every((b) => b.ref === 'refs/heads/main' && b.state === 'success'));
    const [newest] = list.builds;
    assert.ok(newest !== undefined);

    const one = parse<{ build: BuildView; waiting: string | null }>(await cli(['status', '--json', newest.id]));
    assert.equal(one.build.id, newest.id);
    assert.equal(one.waiting, null);
    const human = await cli(['status', newest.id]);
    assert.match(human.stdout, new RegExp(`^artifact: +result\\.txt ${expected.length} bytes sha256:${digest}$`, 'm'));

    const queue = parse<{ queue: { concurrency: number; waiting: unknown[] }; running: BuildView[] }>(await cli(['status', '--json']));
    assert.equal(queue.queue.concurrency, 1);
    assert.deepEqual(queue.running, []);

    const rebuilt = await cli(['rebuild', '--json', '--wait', newest.id]);
    assert.equal(rebuilt.code, 0, rebuilt.stderr);
    const [again] = parse<BuildsJson>(rebuilt).builds;
    assert.notEqual(again?.id, newest.id);
    assert.equal(again?.state, 'success');
    assert.equal(again.cached, true, 'the same inputs without --force are a cache hit');

    const byDigest = await cli(['artifact', 'get', '--json', digest, '-o', join(tmp, 'by-digest.txt')]);
    assert.equal(byDigest.code, 0, byDigest.stderr);
    assert.equal(parse<{ digest: string; verified: boolean }>(byDigest).verified, true);
    await mkdir(join(tmp, 'by-build'));
    const byBuild = await cli(['artifact', 'get', '--build', newest.id, '--name', 'result.txt', '-o', join(tmp, 'by-build')]);
    assert.equal(byBuild.code, 0, byBuild.stderr);
    const byRef = parse<{ build: string; file: string }>(
      await cli(['artifact', 'get', '--json', '--repo', 'acme/widget', '--ref', 'main', '--name', 'result.txt', '-o', join(tmp, 'by-ref.txt')]),
    );
    assert.equal(byRef.file, join(tmp, 'by-ref.txt'));
    for (const file of ['by-digest.txt', 'by-build/result.txt', 'by-ref.txt']) assert.deepEqual(await readFile(join(tmp, file)), expected, file);
    const missing = await cli(['artifact', 'get', '--build', newest.id, '--name', 'nope.txt', '-o', join(tmp, 'nope.txt')]);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /has no artifact "nope\.txt"/);
  });

  test('build --param sends the parameters: a definition that declares none refuses them, exit 3 with the reason', async () => {
    const run = await cli(['build', '--repo', 'acme/widget', '--ref', 'main', '--param', 'GREETING=hello']);
    assert.equal(run.code, 3);
    assert.match(run.stderr, /^autobuilder: POST \/api\/builds: 422 PARAMS_INVALID: invalid parameters: GREETING: /);
  });

  test('the URL and token come from the CLI config file when no flag or env gives them', async () => {
    const home = join(tmp, 'xdg');
    await mkdir(join(home, 'autobuilder'), { recursive: true });
    await writeFile(join(home, 'autobuilder', 'cli.json'), JSON.stringify({ url: f.server.url, token: TOKEN }));
    const run = await runCliProcess(['list', '--json', '--limit', '1'], { env: { XDG_CONFIG_HOME: home } });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(parse<{ builds: unknown[] }>(run).builds.length, 1);
    // the token is read too: a write needs it
    const rebuild = await runCliProcess(['rebuild', '--json', parse<{ builds: BuildView[] }>(run).builds[0]?.id ?? ''], { env: { XDG_CONFIG_HOME: home } });
    assert.equal(rebuild.code, 0, rebuild.stderr);
    const denied = await runCliProcess(['cancel', 'nosuchbuild'], { env: { AUTOBUILDER_URL: f.server.url } });
    assert.equal(denied.code, 3);
    assert.match(denied.stderr, /401 UNAUTHORIZED: a valid bearer token is required \(give the API token with --token/);
  });

  test('a server that is not there exits 3 with a clear message and no stack', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const run = await runCliProcess(['build', '--repo', 'acme/widget', '--ref', 'main'], { env: { AUTOBUILDER_URL: `http://127.0.0.1:${port}` } });
    assert.equal(run.code, 3);
    assert.equal(run.stderr, `autobuilder: cannot reach the autobuilder server at http://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}\n`);
    assert.equal(run.stdout, '');
  });

  test('bad usage exits 2 and names the problem', async () => {
    const cases: [string[], RegExp][] = [
      [['build', '--repo', 'widget', '--ref', 'main'], /give the repository as owner\/name/],
      [['build', '--repo', 'acme/widget'], /required option '--ref <ref>' not specified/],
      [['build', '--repo', 'acme/widget', '--ref', 'bad..ref'], /give a branch name/],
      [['build', '--repo', 'acme/widget', '--ref', 'main', '--no-wait', '--target', tmp], /--no-wait cannot go with --follow or --target/],
      [['list', '--limit', '0'], /give a whole number from 1 to 500/],
      [['list', '--state', 'done'], /give one of queued, running/],
      [['artifact', 'get', '--name', 'x'], /give one of: DIGEST/],
      [['logs'], /missing required argument 'id'/],
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['--url', 'ftp://x', 'list'], /must be http or https/],
    ];
    for (const [args, message] of cases) {
      const run = await cli(args);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, message, args.join(' '));
    }
  });
});

describe('POST /api/builds?wait=SECONDS', () => {
  let f: FixtureServer;
  const post = async (path: string, body: unknown, signal?: AbortSignal) => {
    const response = await fetch(`${f.server.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      ...(signal === undefined ? {} : { signal }),
    });
    return { status: response.status, body: (await response.json()) as { builds: BuildView[]; error?: { code: string; message: string } } };
  };

  before(async () => {
    f = await startFixtureServer('builds-wait', { jobConcurrency: 1, api: { token: TOKEN } });
    for (const branch of ['long', 'slow']) await promisify(execFile)('git', ['-C', f.repo.dir, 'branch', branch]);
    await pushMain(f);
  });
  after(async () => {
    await f.close({ graceMs: 0 });
    await rm(f.dir, { recursive: true, force: true }).catch(() => undefined);
  });

  test('answers 200 with the builds once they have ended within the wait', async () => {
    const answer = await post('/api/builds?wait=120', { repo: 'acme/widget', ref: 'refs/heads/main', force: true });
    assert.equal(answer.status, 200);
    assert.equal(answer.body.builds.length, 1);
    assert.equal(answer.body.builds[0]?.state, 'success');
    assert.equal(answer.body.builds[0].artifacts[0]?.name, 'result.txt');
  });

  test('answers 202 with the builds as they are when the wait expires', async () => {
    const started = Date.now();
    const answer = await post('/api/builds?wait=1.5', { repo: 'acme/widget', ref: 'refs/heads/long' });
    const took = Date.now() - started;
    assert.equal(answer.status, 202);
    const [build] = answer.body.builds;
    assert.ok(build !== undefined && ['queued', 'running'].includes(build.state), build?.state);
    assert.ok(took >= 1400, `answered after ${took} ms`);
    // GET with ?wait= answers as the wait expires too, 200 with the build as it is
    const read = await fetch(`${f.server.url}/api/builds/${build.id}?wait=0.2`);
    assert.equal(read.status, 200);
    assert.ok(['queued', 'running'].includes(((await read.json()) as BuildView).state));
    assert.equal((await post(`/api/builds/${build.id}/cancel`, {})).status, 200);
  });

  test('a client that goes away while waiting does not cancel the build', async () => {
    const controller = new AbortController();
    const waiting = post('/api/builds?wait=600', { repo: 'acme/widget', ref: 'refs/heads/slow', force: true }, controller.signal);
    // the build is made before the wait begins: find it, then hang up
    let build: BuildView | undefined;
    for (let i = 0; i < 200 && build === undefined; i++) {
      build = (await f.builds()).find((b) => b.ref === 'refs/heads/slow');
      if (build === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(build !== undefined, 'the build was made');
    controller.abort();
    await assert.rejects(waiting, { name: 'AbortError' });
    const ended = (await (await fetch(`${f.server.url}/api/builds/${build.id}?wait=120`)).json()) as BuildView;
    assert.equal(ended.state, 'success', ended.description ?? '');
  });

  test('answers 422 for a wait that is not 0 to 3600 seconds, before making any build', async () => {
    const before = (await f.builds()).length;
    for (const wait of ['abc', '-1', '3601', '1e3', '', '1&wait=2']) {
      const answer = await post(`/api/builds?wait=${wait}`, { repo: 'acme/widget', ref: 'refs/heads/main' });
      assert.equal(answer.status, 422, wait);
      assert.equal(answer.body.error?.code, 'BAD_REQUEST');
      assert.match(answer.body.error.message, /wait is a number of seconds from 0 to 3600/);
    }
    assert.equal((await f.builds()).length, before);
    const read = await fetch(`${f.server.url}/api/builds/${(await f.builds())[0]?.id ?? ''}?wait=x`);
    assert.equal(read.status, 422);
  });
});
