import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadConfig } from './load-config.js';
import { assertHostMountsExist } from './host-mount.js';

/** The CONFIG_INVALID message of a config with `mounts`. */
function refused(mounts: unknown): string {
  try {
    loadConfig({ builds: { mounts } }, {});
  } catch (err) {
    assert.ok(err instanceof Error && 'code' in err && err.code === 'CONFIG_INVALID', String(err));
    return err.message;
  }
  assert.fail('the config was accepted');
}

describe('builds.mounts', () => {
  test('none by default; read-only and not for forks unless said', () => {
    assert.deepEqual(loadConfig({}, {}).builds.mounts, []);
    assert.deepEqual(loadConfig({ builds: { mounts: [{ host: '/opt/sdk', container: '/opt/sdk' }] } }, {}).builds.mounts, [
      { host: '/opt/sdk', container: '/opt/sdk', readOnly: true, forks: false },
    ]);
    assert.deepEqual(loadConfig({ builds: { mounts: [{ host: '/srv/out', container: '/out', readOnly: false, forks: true }] } }, {}).builds.mounts[0], {
      host: '/srv/out',
      container: '/out',
      readOnly: false,
      forks: true,
    });
  });

  test('refuses relative, unnormalised and root host paths, naming each', () => {
    assert.match(refused([{ host: 'opt/sdk', container: '/sdk' }]), /builds\.mounts\.0\.host: must be an absolute path on the host/);
    assert.match(refused([{ host: '/opt/../etc', container: '/sdk' }]), /builds\.mounts\.0\.host: must be a normalised absolute path/);
    assert.match(refused([{ host: '/', container: '/sdk' }]), /builds\.mounts\.0\.host: must be a normalised absolute path .*not "\/"/);
    assert.match(refused([{ host: '/opt/sdk/', container: '/sdk' }]), /builds\.mounts\.0\.host/);
  });

  test('refuses container paths that are /, the workspace, inside it, or nested in another mount', () => {
    assert.match(refused([{ host: '/opt/sdk', container: '/' }]), /builds\.mounts\.0\.container: must be an absolute path in the container/);
    assert.match(refused([{ host: '/opt/sdk', container: '/workspace' }]), /builds\.mounts\.0\.container: must not be the workspace/);
    assert.match(refused([{ host: '/opt/sdk', container: '/workspace/sdk' }]), /must not be the workspace \(\/workspace\) or inside it/);
    assert.match(refused([{ host: '/opt/sdk', container: '/dev/sdk' }]), /must not be \/proc, \/sys or \/dev/);
    assert.match(
      refused([
        { host: '/opt/a', container: '/opt/x' },
        { host: '/opt/b', container: '/opt/x/y' },
      ]),
      /builds\.mounts\.1\.container: overlaps the container path of mount 0/,
    );
    assert.match(refused([{ host: '/opt/sdk', container: '/sdk', extra: 1 }]), /builds\.mounts\.0/);
  });

  test('a host path that does not exist is a configuration error naming it; existing ones pass', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'autobuilder-mounts-'));
    try {
      await assertHostMountsExist([{ host: dir, container: '/x', readOnly: true, forks: false }]);
      await assert.rejects(
        assertHostMountsExist([
          { host: dir, container: '/x', readOnly: true, forks: false },
          { host: join(dir, 'missing'), container: '/y', readOnly: true, forks: false },
        ]),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'CONFIG_INVALID');
          assert.match(err.message, new RegExp(`builds\\.mounts\\.1\\.host: ${join(dir, 'missing')} cannot be mounted \\(ENOENT\\)`));
          assert.doesNotMatch(err.message, /mounts\.0/);
          return true;
        },
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
