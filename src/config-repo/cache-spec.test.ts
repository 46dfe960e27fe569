import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isAppError } from '../errors.js';
import { parseDefinitionFile } from './definition.js';

const FILE = 'acme/widget/main.yaml';
const one = (options: string) => parseDefinitionFile(`buildscripts: [b.sh]\nb.sh:\n  archives: /out\n  artifact: x\n${options}`, FILE)[0];

/** The DEFINITION_INVALID message of a definition with `options`. */
function refused(options: string): string {
  try {
    one(options);
  } catch (err) {
    assert.ok(isAppError(err, 'DEFINITION_INVALID'), String(err));
    return err.message;
  }
  assert.fail('the definition was accepted');
}

describe('caches of a definition', () => {
  test('none by default; the paths in order and resources.cacheMiB as the cap', () => {
    assert.deepEqual(one('')?.caches, { paths: [], maxBytes: null });
    assert.deepEqual(one('  caches: [/root/.npm, /root/.cache/ccache]\n  resources: { cacheMiB: 512 }\n')?.caches, {
      paths: ['/root/.npm', '/root/.cache/ccache'],
      maxBytes: 512 * 1024 * 1024,
    });
  });

  const bad: [string, RegExp][] = [
    ['/', /b\.sh\.caches\.0: must be an absolute path in the container/],
    ['root/.npm', /b\.sh\.caches\.0: must be an absolute path/],
    ['/root/../etc', /b\.sh\.caches\.0: must be a normalised path/],
    ['/root/./x', /b\.sh\.caches\.0: must be a normalised path/],
    ['/root/x/', /b\.sh\.caches\.0: must be an absolute path/],
    ['/workspace', /b\.sh\.caches\.0: must not be the workspace \(\/workspace\) or inside it/],
    ['/workspace/node_modules', /must not be the workspace/],
    ['/proc/x', /must not be \/proc, \/sys or \/dev/],
    ['"/a b"', /must be an absolute path/],
    ['"/a:b"', /must be an absolute path/],
  ];
  for (const [path, message] of bad) {
    test(`refuses the cache ${path}, naming the line and key`, () => {
      assert.match(refused(`  caches: [${path}]\n`), message);
      assert.match(refused(`  caches: [${path}]\n`), /main\.yaml:5:/);
    });
  }

  test('refuses a cache inside another, a duplicate, too many, and a cap that is not a positive integer', () => {
    assert.match(refused('  caches: [/root/.cache, /root/.cache/x]\n'), /b\.sh\.caches\.1: overlaps "\/root\/\.cache": a cache may not be inside another/);
    assert.match(refused('  caches: [/root/.npm, /root/.npm]\n'), /b\.sh\.caches\.1: overlaps/);
    assert.match(refused(`  caches: [${Array.from({ length: 9 }, (_, i) => `/c${i}`).join(', ')}]\n`), /at most 8 caches/);
    assert.match(refused('  caches: [/root/.npm]\n  resources: { cacheMiB: 0 }\n'), /b\.sh\.resources\.cacheMiB/);
  });
});
