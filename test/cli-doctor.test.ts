import assert from 'node:assert/strict';
import { cp, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { DoctorReport, DoctorRow } from '../src/cli/doctor.js';
import type { ConfigInput } from '../src/config/index.js';
import { runCliProcess } from './support/cli-process.js';
import { makeTestDir } from './support/data-dir.js';
import { createGitRepository } from './support/git-repository.js';

const EXAMPLE = resolve(import.meta.dirname, '..', 'projects-config-repo-example');

describe('autobuilder doctor', () => {
  let dir: string;
  let dataDir: string;
  let good: string;

  /** Writes a server config module `name` with `input` over a data directory in the test's directory and the example config repository. */
  const writeConfig = async (name: string, input: ConfigInput): Promise<string> => {
    const file = join(dir, name);
    await writeFile(file, `export default ${JSON.stringify({ dataDir, configRepository: { path: EXAMPLE }, ...input })};\n`);
    return file;
  };
  const rowsOf = (stdout: string): Map<string, DoctorRow> => new Map((JSON.parse(stdout) as DoctorReport).rows.map((r) => [r.check, r]));

  before(async () => {
    // on the Btrfs volume, as a server's data directory is after scripts/host-setup.sh
    dir = await makeTestDir('cli-doctor');
    dataDir = join(dir, 'data');
    await mkdir(dataDir);
    good = await writeConfig('config.mjs', {});
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('passes on this machine: exit 0, a table of every check', async () => {
    const run = await runCliProcess(['doctor', '--config', good]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /^CHECK +RESULT +DETAIL\n/);
    for (const check of [
      'server config',
      'docker engine',
      'default image',
      'build network',
      'snapshots',
      'data directory',
      'free space',
      'config repository',
    ]) {
      assert.match(run.stdout, new RegExp(`^${check} +ok +\\S`, 'm'), check);
    }
    assert.match(run.stdout, /^webhook secret +warn +none set: the server generates one in .*\/webhook-secret/m);
    assert.match(run.stdout, /^all checks pass/m);
  });

  test('--json gives the rows; the snapshot check finds Btrfs under the data directory', async () => {
    const run = await runCliProcess(['--json', 'doctor', '--config', good]);
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout) as DoctorReport;
    assert.equal(report.ok, true);
    assert.equal(report.configFile, good);
    const rows = new Map(report.rows.map((r) => [r.check, r]));
    assert.match(rows.get('docker engine')?.detail ?? '', /^Docker \S+ \(API [\d.]+\) answers at \/var\/run\/docker\.sock$/);
    assert.match(rows.get('snapshots')?.detail ?? '', /is on Btrfs \(btrfs-progs v/);
    assert.match(rows.get('config repository')?.detail ?? '', /valid, 5 definition files, 8 builds, 1 repository$/);
    for (const r of report.rows) assert.equal(r.todo === null, r.result === 'ok', `${r.check}: what to do goes with warn and fail only`);
  });

  test('names the failing check when the Docker socket path is wrong (--socket): exit 1', async () => {
    const run = await runCliProcess(['doctor', '--config', good, '--socket', '/nonexistent.sock']);
    assert.equal(run.code, 1);
    assert.match(run.stdout, /^docker engine +FAIL +no socket at \/nonexistent\.sock\n +to do: start the Docker engine/m);
    assert.match(run.stdout, /^default image +FAIL +not checked: the Docker engine does not answer/m);
    assert.match(run.stdout, /^4 checks fail: docker engine, default image, build network, definition images/m);
  });

  test('names the failing check when the config file has a wrong docker.socketPath', async () => {
    const file = await writeConfig('wrong-socket.mjs', { docker: { socketPath: join(dir, 'no-docker.sock') } });
    const run = await runCliProcess(['--json', 'doctor', '--config', file]);
    assert.equal(run.code, 1);
    const rows = rowsOf(run.stdout);
    assert.equal(rows.get('docker engine')?.result, 'fail');
    assert.equal(rows.get('docker engine')?.detail, `no socket at ${join(dir, 'no-docker.sock')}`);
    assert.equal(rows.get('data directory')?.result, 'ok');
  });

  test('a socket that never answers fails its check at the timeout instead of hanging', async () => {
    const socketPath = join(dir, 'silent.sock');
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((ok) => silent.listen(socketPath, ok));
    try {
      const started = Date.now();
      const run = await runCliProcess(['--json', 'doctor', '--config', good, '--socket', socketPath, '--timeout', '1']);
      assert.equal(run.code, 1);
      assert.deepEqual(rowsOf(run.stdout).get('docker engine')?.detail, 'no answer within 1 s');
      assert.ok(Date.now() - started < 20_000, 'doctor ended soon after the timeout');
    } finally {
      silent.close();
    }
  });

  test('names what fails on a host set up wrong, each with what to do', async () => {
    const broken = join(dir, 'broken-config-repo');
    await cp(EXAMPLE, broken, { recursive: true });
    await writeFile(join(broken, 'octocat/hello-make/main.yaml'), 'buildscripts:\n  - autobuild/build.sh\nautobuild/build.sh:\n  archive: /tmp\n');
    const file = await writeConfig('broken.mjs', {
      configRepository: { path: broken },
      docker: { defaultImage: 'autobuilder/not-made:never', network: 'autobuilder-no-such-network' },
      builds: { diskReserveMiB: 100_000_000 },
    });
    const run = await runCliProcess(['--json', 'doctor', '--config', file]);
    assert.equal(run.code, 1);
    const rows = rowsOf(run.stdout);
    const expectFail = (check: string, detail: RegExp, todo: RegExp) => {
      const r = rows.get(check);
      assert.equal(r?.result, 'fail', check);
      assert.match(r.detail, detail, check);
      assert.match(r.todo ?? '', todo, check);
    };
    expectFail('default image', /autobuilder\/not-made:never is not on the engine/, /docker pull autobuilder\/not-made:never/);
    expectFail('build network', /autobuilder-no-such-network does not exist/, /docker network create autobuilder-no-such-network/);
    expectFail('free space', /reserve 100000000 MiB .*new builds would wait/, /builds\.diskReserveMiB/);
    expectFail('config repository', /octocat\/hello-make\/main\.yaml:4: autobuild\/build\.sh\.archive: /, /autobuilder config check/);
    assert.equal(rows.get('definition images'), undefined, 'no images are read from a config repository that is refused');
  });

  test('fetches a git config repository as the server would, into a directory of its own, and validates it', async () => {
    const repo = await createGitRepository(join(dir, 'config-origin'), EXAMPLE);
    const file = await writeConfig('git-mode.mjs', { configRepository: { url: repo.url, branch: 'main' } });
    const run = await runCliProcess(['--json', 'doctor', '--config', file]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal(
      rowsOf(run.stdout).get('config repository')?.detail,
      `${repo.url} (main): valid, 5 definition files, 8 builds, 1 repository at ${repo.head?.slice(0, 12)}`,
    );
    // the server's own copy of the config repository is left alone
    await assert.rejects(stat(join(dataDir, 'config-repo.git')), { code: 'ENOENT' });
    const missing = await writeConfig('git-no-branch.mjs', { configRepository: { url: repo.url, branch: 'no-such-branch' } });
    const refused = await runCliProcess(['--json', 'doctor', '--config', missing]);
    assert.equal(refused.code, 1);
    const r = rowsOf(refused.stdout).get('config repository');
    assert.match(r?.detail ?? '', /\(no-such-branch\) cannot be fetched: .*couldn't find remote ref refs\/heads\/no-such-branch/);
    assert.match(r?.todo ?? '', /configRepository\.url/);
  });

  test('finds the webhook secret as the server does, and never prints it', async () => {
    const fromEnv = await runCliProcess(['doctor', '--config', good], { env: { GITHUB_WEBHOOK_SECRET: 'doctor-secret-from-env' } });
    assert.equal(fromEnv.code, 0);
    assert.match(fromEnv.stdout, /^webhook secret +ok +set \(GITHUB_WEBHOOK_SECRET\)$/m);
    assert.ok(!fromEnv.stdout.includes('doctor-secret-from-env'));
    await writeFile(join(dataDir, 'webhook-secret'), 'generated-doctor-secret\n', { mode: 0o600 });
    const generated = await runCliProcess(['doctor', '--config', good]);
    assert.equal(generated.code, 0);
    assert.match(generated.stdout, new RegExp(`^webhook secret +ok +generated by the server, in ${join(dataDir, 'webhook-secret')}`, 'm'));
    assert.ok(!generated.stdout.includes('generated-doctor-secret'));
  });

  test('a config module that does not validate fails its row and the others run on the defaults', async () => {
    const file = join(dir, 'invalid.mjs');
    await writeFile(file, "export default { listen: { port: 'eighty' } };\n");
    const run = await runCliProcess(['--json', 'doctor', '--config', file]);
    assert.equal(run.code, 1);
    const rows = rowsOf(run.stdout);
    assert.match(rows.get('server config')?.detail ?? '', /listen\.port: /);
    assert.equal(rows.get('docker engine')?.result, 'ok');
  });
});
