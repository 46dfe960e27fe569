import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseAnsi, safeHref, toPlainText } from './static/ansi.js';

const ESC = '\x1b';

describe('ANSI parsing for the log views', () => {
  test('plain text is one unstyled segment', () => {
    assert.deepEqual(parseAnsi('hello <b>world</b> &amp;'), [{ text: 'hello <b>world</b> &amp;', classes: [], color: null, background: null, href: null }]);
  });

  test('SGR colours and attributes become classes, and reset', () => {
    const segments = parseAnsi(`a${ESC}[1;31mred${ESC}[0m b ${ESC}[42;97mon green${ESC}[39m default${ESC}[m end`);
    assert.deepEqual(
      segments.map((s) => [s.text, s.classes.join(' ')]),
      [
        ['a', ''],
        ['red', 'a-b a-fg-1'],
        [' b ', ''],
        ['on green', 'a-fg-15 a-bg-2'],
        [' default', 'a-bg-2'],
        [' end', ''],
      ],
    );
  });

  test('256-colour and true-colour become rgb() values; out-of-range ones are ignored', () => {
    const [a, b, c, d] = parseAnsi(`${ESC}[38;5;196mx${ESC}[48;2;1;2;3my${ESC}[0;38;5;4mz${ESC}[38;2;999;0;0mw`);
    assert.equal(a?.color, 'rgb(255, 0, 0)');
    assert.equal(b?.background, 'rgb(1, 2, 3)');
    assert.deepEqual(c?.classes, ['a-fg-4']);
    assert.equal(d?.color, null);
  });

  test('inverse swaps the colours', () => {
    const [s] = parseAnsi(`${ESC}[31;7mx`);
    assert.deepEqual(s?.classes, ['a-bg-1']);
  });

  test('other escape sequences and control characters are dropped, tabs kept', () => {
    assert.equal(toPlainText(`${ESC}[2K${ESC}[1Gstart\tmid\x07${ESC}]0;window title\x07 end\x00\x08${ESC}7`), 'start\tmid end');
  });

  test('a carriage return keeps what a terminal shows last', () => {
    assert.equal(toPlainText('10%\r50%\r100%'), '100%');
    assert.equal(toPlainText('done\r'), 'done');
  });

  test('OSC 8 links carry their target; the end of the link ends it', () => {
    const segments = parseAnsi(`see ${ESC}]8;;https://example.com/x?a=1${ESC}\\the docs${ESC}]8;;${ESC}\\ now`);
    assert.deepEqual(
      segments.map((s) => [s.text, s.href]),
      [
        ['see ', null],
        ['the docs', 'https://example.com/x?a=1'],
        [' now', null],
      ],
    );
    const bel = parseAnsi(`${ESC}]8;id=1;javascript:alert(1)\x07click${ESC}]8;;\x07`);
    assert.deepEqual(
      bel.map((s) => [s.text, s.href]),
      [['click', 'javascript:alert(1)']],
    );
  });

  test('only absolute http and https link targets are safe', () => {
    assert.equal(safeHref('https://example.com/a b'), 'https://example.com/a%20b');
    assert.equal(safeHref('http://example.com'), 'http://example.com/');
    for (const href of [
      'javascript:alert(1)',
      'JaVaScRiPt:alert(1)',
      ' javascript:alert(1)',
      'data:text/html,<script>alert(1)</script>',
      'vbscript:x',
      '/relative',
      'file:///etc/passwd',
      null,
    ]) {
      assert.equal(safeHref(href), null, String(href));
    }
  });

  test('markup in a log line stays text', () => {
    assert.equal(toPlainText(`${ESC}[31m<script>alert(1)</script>${ESC}[0m &lt;`), '<script>alert(1)</script> &lt;');
  });
});
