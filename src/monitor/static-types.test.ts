import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

test('the browser scripts type-check (JSDoc, strict, DOM)', async () => {
  const root = join(import.meta.dirname, '..', '..');
  const tsc = join(root, 'node_modules', '.bin', 'tsc');
  const result = await run(tsc, ['-p', join(import.meta.dirname, 'static', 'tsconfig.json')], { cwd: root }).catch(
    (err: { stdout?: string; code?: number }) => ({ stdout: err.stdout ?? '', code: err.code }),
  );
  assert.equal(result.stdout.trim(), '', 'tsc found problems in src/monitor/static');
});
