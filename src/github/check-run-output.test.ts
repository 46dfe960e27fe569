import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { micromark } from 'micromark';
import { gfm, gfmHtml } from 'micromark-extension-gfm';
import type { Build } from '../builds/build.js';
import { toStopEnd } from '../builds/build-execution.js';
import {
  MAX_OUTPUT_BYTES,
  REBUILD_ACTION,
  toBuildOutput,
  toBytesClipped,
  toCodeSpan,
  toConclusion,
  toConfigOutput,
  toLogBlock,
  toProblemAnnotations,
  toTitle,
} from './check-run-output.js';

/** Markdown to HTML as GitHub renders it (GFM: tables, autolinks, strikethrough), raw HTML let through so a test sees it. */
const render = (markdown: string) => micromark(markdown, { allowDangerousHtml: true, extensions: [gfm()], htmlExtensions: [gfmHtml()] });
const bytes = (text: string) => Buffer.byteLength(text, 'utf8');

const HOSTILE = [
  '<img src=x onerror=alert(1)>',
  '<script>alert(1)</script>',
  '[click me](https://evil.example/)',
  '![pixel](https://evil.example/p.png)',
  'https://evil.example/bare',
  '@acme/security-team please look',
  '```',
  '````markdown',
  '~~~',
  '`` a `code` span ``',
  '# heading',
  '| a | b |',
  '|---|---|',
  '\u001b[31mred\u001b[0m \u001b]8;;https://evil.example/\u0007osc link\u001b]8;;\u0007',
  '</code></pre><h1>out</h1>',
  '&lt;entity&gt;',
].join('\n');

const build = (over: Partial<Build> = {}): Build => ({
  id: 'mfx1k2p3-9f3a2c1d',
  repo: 'acme/widget',
  ref: 'refs/heads/main',
  sha: 'a'.repeat(40),
  definition: 'autobuild/build.sh',
  context: 'autobuilder/autobuild/build.sh',
  state: 'success',
  exitCode: 0,
  description: 'Built in 3.2 s',
  cached: false,
  coalesced: false,
  incremental: true,
  parentBuildId: 'mfx1k000-00000000',
  cacheKey: 'k',
  cacheInputs: null,
  sourceBuildId: null,
  cacheMiss: { comparedWith: 'mfx1k000-00000000', differs: ['tree'], forced: false },
  configSha: null,
  worker: 'worker-1',
  deliveryId: null,
  queuedAt: '2030-01-01T00:00:00.000Z',
  startedAt: '2030-01-01T00:00:01.500Z',
  finishedAt: '2030-01-01T00:00:04.700Z',
  artifacts: [{ name: 'hello', digest: 'b'.repeat(64), size: 1234 }],
  ...over,
});

const context = { publicUrl: 'https://ci.example/', logTail: null, annotations: { count: 0, dropped: 0 } };

/** Every link and image in rendered HTML, by its target. */
const targets = (html: string) => [...html.matchAll(/<(?:a href|img src)="([^"]*)"/g)].map((m) => m[1]);

describe('check run output', () => {
  test('conclusions: success, failure, cancelled; timed_out for the stops of a timeout; action_required for other errors; none while not ended', () => {
    assert.equal(toConclusion({ state: 'queued', description: 'Queued' }), null);
    assert.equal(toConclusion({ state: 'running', description: 'Running' }), null);
    assert.equal(toConclusion({ state: 'success', description: null }), 'success');
    assert.equal(toConclusion({ state: 'failure', description: 'exited with code 2' }), 'failure');
    assert.equal(toConclusion({ state: 'cancelled', description: 'Superseded' }), 'cancelled');
    assert.equal(toConclusion(toStopEnd({ kind: 'timeout', seconds: 30 })), 'timed_out');
    assert.equal(toConclusion(toStopEnd({ kind: 'output-timeout', seconds: 10 })), 'timed_out');
    assert.equal(toConclusion(toStopEnd({ kind: 'disk-critical', reason: 'volume full' })), 'action_required');
    assert.equal(toConclusion({ state: 'error', description: 'image autobuilder/nope not found' }), 'action_required');
  });

  test('the rebuild action button stays within GitHub’s limits (label and identifier 20, description 40)', () => {
    assert.ok(REBUILD_ACTION.label.length <= 20);
    assert.ok(REBUILD_ACTION.identifier.length <= 20);
    assert.ok(REBUILD_ACTION.description.length <= 40);
  });

  test('a code span holds any value as text: no HTML, link, image or mention comes out of it', () => {
    for (const value of HOSTILE.split('\n')) {
      const html = render(`value: ${toCodeSpan(value)}`);
      assert.match(html, /^<p>value: <code>[^<]*<\/code><\/p>$/, `${JSON.stringify(value)} → ${html}`);
    }
    const html = render(`- ${toCodeSpan(HOSTILE)}`);
    assert.deepEqual(targets(html), []);
    assert.doesNotMatch(html, /<(img|script|h1|table|a)\b/);
    assert.equal(toCodeSpan(''), '` `');
    assert.ok(toCodeSpan('x'.repeat(5000)).length < 320, 'a value is clipped');
  });

  test('a log block keeps every line inside its fence, whatever the lines hold, escape sequences removed', () => {
    const lines = HOSTILE.split('\n');
    const { block, shown } = toLogBlock(lines, MAX_OUTPUT_BYTES);
    assert.equal(shown, lines.length);
    const html = render(block);
    assert.match(html, /^<pre><code class="language-text">[\s\S]*<\/code><\/pre>$/);
    assert.equal((html.match(/<pre>/g) ?? []).length, 1, 'one code block, not closed early');
    assert.ok(!block.includes('\u001b'), 'no escape character left');
    assert.match(html, /red osc link/);
    assert.match(html, /&lt;img src=x onerror=alert\(1\)&gt;/);
  });

  test('a log block keeps the last lines that fit in its bytes', () => {
    const lines = Array.from({ length: 10_000 }, (_, i) => `line ${i} ${'é'.repeat(40)}`);
    const { block, shown } = toLogBlock(lines, 4096);
    assert.ok(bytes(block) <= 4096);
    assert.ok(shown > 10 && shown < 100);
    assert.match(block, /line 9999 /);
    assert.doesNotMatch(block, new RegExp(`line ${9999 - shown} `));
  });

  test('summary: state, duration, cache miss, incremental workspace, artifact with digest and download link, worker', () => {
    const out = toBuildOutput(build(), context);
    assert.equal(out.title, 'Success: Built in 3.2 s');
    assert.match(out.summary, /\*\*Success\*\*/);
    assert.match(out.summary, /\*\*Duration:\*\* 3\.2 s \(queued 1\.5 s\)/);
    assert.match(out.summary, /miss: `tree` differ from build \[`mfx1k000-00000000`\]\(https:\/\/ci\.example\/builds\/mfx1k000-00000000\)/);
    assert.match(out.summary, /incremental, a snapshot of build/);
    assert.match(out.summary, /`worker-1`/);
    const html = render(out.summary);
    assert.ok(targets(html).includes(`https://ci.example/api/artifacts/${'b'.repeat(64)}`));
    assert.match(html, new RegExp(`sha256 <code>${'b'.repeat(64)}</code>`));
    assert.ok(targets(html).includes('https://ci.example/builds/mfx1k2p3-9f3a2c1d'));
    assert.equal(out.text, null, 'no log tail given, no text');
  });

  test('summary of a cache hit names the build it reuses; of a forced build, that the cache was not used', () => {
    const hit = toBuildOutput(
      build({ cached: true, sourceBuildId: 'mfx0-src', startedAt: null, finishedAt: '2030-01-01T00:00:00.300Z', cacheMiss: null, worker: null }),
      context,
    );
    assert.match(hit.summary, /\*\*Cache:\*\* hit: the same inputs as build \[`mfx0-src`\]/);
    assert.doesNotMatch(hit.summary, /Worker|Workspace/);
    const forced = toBuildOutput(build({ cacheMiss: { comparedWith: 'x', differs: [], forced: true } }), context);
    assert.match(forced.summary, /the build was forced/);
  });

  test('hostile values in the summary (ref, description, worker, artifact name) stay text; title is one plain line', () => {
    const evil = build({
      ref: `refs/heads/${HOSTILE}`,
      description: HOSTILE,
      worker: '@acme/owners <b>',
      artifacts: [{ name: '[x](https://evil.example/)', digest: 'c'.repeat(64), size: 1 }],
      state: 'failure',
    });
    const out = toBuildOutput(evil, { ...context, logTail: { lines: HOSTILE.split('\n'), total: 16 } });
    const html = render(out.summary) + render(out.text ?? '');
    assert.doesNotMatch(html, /<(img|script|h1|table)\b/);
    assert.ok(
      targets(html).every((t) => t?.startsWith('https://ci.example/')),
      targets(html).join(' '),
    );
    assert.ok(!out.title.includes('\n') && !out.title.includes('\u001b'));
    assert.ok(out.title.length <= 255);
    assert.equal(toTitle('a\nb\u0007c'), 'a bc');
  });

  test('summary and text stay within 65535 bytes each whatever the build printed', () => {
    const lines = Array.from({ length: 5000 }, (_, i) => `${i}: ${'ü'.repeat(200)}`);
    const out = toBuildOutput(build({ description: 'x'.repeat(100_000) }), { ...context, logTail: { lines, total: 123_456 } });
    assert.ok(bytes(out.summary) <= MAX_OUTPUT_BYTES);
    assert.ok(out.text !== null && bytes(out.text) <= MAX_OUTPUT_BYTES && bytes(out.text) > MAX_OUTPUT_BYTES - 1000, String(out.text?.length));
    assert.match(out.text, /^The last \d+ of 123456 lines of the build log/);
    assert.match(out.text, /4999: ü/);
    assert.equal(bytes(toBytesClipped('ü'.repeat(10), 9)), 9);
    assert.equal(toBytesClipped('ü'.repeat(10), 9), 'üüü…');
  });

  test('config problems become failure annotations at their file and line; a refused revision lists them as code', () => {
    const problems = [
      { file: 'acme/widget/main.yaml', line: 4, key: 'autobuild/build.sh.env', message: 'expected a map' },
      { file: 'acme/widget/big.yaml', line: null, key: '', message: 'file too large' },
      { file: '', line: null, key: '', message: 'internal error: x' },
    ];
    assert.deepEqual(toProblemAnnotations(problems), [
      {
        path: 'acme/widget/main.yaml',
        start_line: 4,
        end_line: 4,
        annotation_level: 'failure',
        message: 'autobuild/build.sh.env: expected a map',
        title: 'autobuilder definition: autobuild/build.sh.env',
      },
      { path: 'acme/widget/big.yaml', start_line: 1, end_line: 1, annotation_level: 'failure', message: 'file too large', title: 'autobuilder definition' },
    ]);
    const refused = toConfigOutput({ activated: false, problems }, 'https://ci.example/api/config');
    assert.equal(refused.title, 'Refused: 3 problems');
    assert.match(refused.summary, /`acme\/widget\/main\.yaml:4` `autobuild\/build\.sh\.env` `expected a map`/);
    assert.equal(toConfigOutput({ activated: true, files: 1 }, 'https://ci.example/api/config').title, 'Active: 1 definition file');
  });
});
