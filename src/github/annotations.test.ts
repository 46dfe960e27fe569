import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { CONTAINER_WORKDIR } from '../builds/build-execution.js';
import {
  createAnnotationCollector,
  MAX_MESSAGE_CHARS,
  parseAnnotationLine,
  parseDiagnosticLine,
  stripAnsi,
  toAnnotationBatches,
  toRepositoryPath,
  type CheckAnnotation,
} from './annotations.js';

/** A real tool's output from test/fixtures/compiler-output (see its README for how each was made). */
function sample(name: string): string {
  return readFileSync(new URL(`../../test/fixtures/compiler-output/${name}`, import.meta.url), 'utf8');
}

function collect(text: string, maxAnnotations = 1_000): { annotations: readonly CheckAnnotation[]; dropped: number } {
  const collector = createAnnotationCollector({ workspaceDir: CONTAINER_WORKDIR, maxAnnotations });
  for (const line of text.split('\n')) collector.add(line);
  return { annotations: collector.annotations, dropped: collector.dropped };
}

/** path:line:col level, one string per annotation, for readable comparisons */
function brief(annotations: readonly CheckAnnotation[]): string[] {
  return annotations.map((a) => `${a.path}:${a.start_line}:${a.start_column ?? '-'} ${a.annotation_level}`);
}

describe('annotations from real gcc output', () => {
  test('reads warnings, errors, notes and the fatal error of gcc 12, plain and coloured, with repository paths', () => {
    const { annotations } = collect(sample('gcc.txt'));
    assert.deepEqual(brief(annotations), [
      'src/warn.c:4:12 warning',
      'src/warn.c:3:7 warning',
      // the coloured run repeats both warnings: they are kept once
      'src/main.c:2:10 failure', // `/workspace/src/main.c: fatal error`, made relative
      'src/m2.c:4:7 warning',
      'src/m2.c:9:13 warning',
      'src/m2.c:10:12 warning',
      'src/m2.c:11:10 failure',
      'src/m2.c:11:10 notice',
      'src/m2.c:9:9 warning',
    ]);
    assert.deepEqual(annotations[0], {
      path: 'src/warn.c',
      start_line: 4,
      end_line: 4,
      start_column: 12,
      end_column: 12,
      annotation_level: 'warning',
      message: 'format ‘%d’ expects argument of type ‘int’, but argument 2 has type ‘char *’ [-Wformat=]',
      title: '-Wformat=',
    });
    assert.equal(annotations[2]?.message, 'missing.h: No such file or directory');
    assert.equal(annotations[2].title, undefined);
  });

  test('strips gcc colour codes before matching (-fdiagnostics-color)', () => {
    const coloured = sample('gcc.txt')
      .split('\n')
      .filter((line) => line.includes('\u001b[') && line.includes('warning'));
    assert.ok(coloured.length >= 2, 'the sample holds coloured diagnostics');
    const annotation = parseAnnotationLine(coloured[0] ?? '', CONTAINER_WORKDIR);
    assert.equal(annotation?.path, 'src/warn.c');
    assert.equal(annotation.annotation_level, 'warning');
    assert.ok(!annotation.message.includes('\u001b'));
  });

  test('ignores a note in a system header, the linker error and the source excerpts', () => {
    const { annotations } = collect(sample('gcc-system-header.txt'));
    assert.deepEqual(brief(annotations), ['src/sys.c:4:22 warning', 'src/sys.c:4:15 warning']);
  });
});

describe('annotations from real clang output', () => {
  test('reads clang 14 warnings, errors and the fatal error, plain and coloured, and ignores /usr/include', () => {
    const { annotations } = collect(sample('clang.txt'));
    assert.deepEqual(brief(annotations), [
      'src/warn.c:4:18 warning',
      'src/warn.c:3:7 warning',
      'src/main.c:2:10 failure',
      'src/m3.c:4:7 warning',
      'src/m3.c:9:9 warning',
      'src/m3.c:10:18 warning',
      'src/m3.c:11:10 failure',
      'src/sys.c:4:22 warning',
    ]);
    assert.equal(annotations[6]?.message, "use of undeclared identifier 'undefined_var'");
  });
});

describe('annotations from real tsc output', () => {
  test('reads `path(line,col): error TSnnnn: message`', () => {
    const { annotations } = collect(sample('tsc.txt'));
    assert.deepEqual(annotations, [
      {
        path: 'ts/index.ts',
        start_line: 1,
        end_line: 1,
        start_column: 7,
        end_column: 7,
        annotation_level: 'failure',
        message: "TS2322: Type 'string' is not assignable to type 'number'.",
        title: 'TS2322',
      },
      {
        path: 'ts/index.ts',
        start_line: 3,
        end_line: 3,
        start_column: 12,
        end_column: 12,
        annotation_level: 'failure',
        message: "TS2551: Property 'lenght' does not exist on type 'string'. Did you mean 'length'?",
        title: 'TS2551',
      },
    ]);
  });

  test('reads the coloured --pretty form and ignores the related location outside the repository', () => {
    const { annotations } = collect(sample('tsc-pretty.txt'));
    assert.deepEqual(brief(annotations), ['index.ts:1:7 failure', 'index.ts:3:12 failure']);
    assert.equal(annotations[0]?.message, "TS2322: Type 'string' is not assignable to type 'number'.");
  });

  test('keeps parentheses that belong to the path', () => {
    const annotation = parseAnnotationLine('app/(shop)/page.tsx(12,3): error TS2304: Cannot find name x.', CONTAINER_WORKDIR);
    assert.equal(annotation?.path, 'app/(shop)/page.tsx');
    assert.equal(annotation.start_line, 12);
  });
});

describe('annotations from real eslint output', () => {
  const expected = [
    'js/app.js:1:5 failure',
    'js/app.js:1:15 warning',
    'js/app.js:2:10 failure',
    'js/app.js:3:9 warning',
    'js/app.js:3:25 failure',
    'js/app.js:3:34 warning',
  ];

  test('reads the unix format, with the rule as title', () => {
    const { annotations } = collect(sample('eslint-unix.txt'));
    assert.deepEqual(brief(annotations), expected);
    assert.equal(annotations[0]?.message, "'unused' is assigned a value but never used.");
    assert.equal(annotations[0].title, 'no-unused-vars');
  });

  test('reads the compact format, with the rule as title', () => {
    const { annotations } = collect(sample('eslint-compact.txt'));
    assert.deepEqual(brief(annotations), expected);
    assert.equal(annotations[4]?.message, 'eval can be harmful.');
    assert.equal(annotations[4].title, 'no-eval');
  });

  test('does not read the stylish format (its file name is on a line of its own)', () => {
    assert.deepEqual(collect(sample('eslint-stylish.txt')).annotations, []);
  });
});

describe('parseDiagnosticLine', () => {
  test('reads a location without a column', () => {
    assert.deepEqual(parseDiagnosticLine('lib/a.c:17: warning: old-style definition'), {
      file: 'lib/a.c',
      line: 17,
      level: 'warning',
      message: 'old-style definition',
    });
  });

  test('takes what follows the last carriage return, as a terminal shows it', () => {
    assert.equal(parseDiagnosticLine('50% building\rsrc/a.c:1:2: error: boom\r')?.message, 'boom');
  });

  test('ignores lines that only mention a location', () => {
    for (const line of [
      'In file included from src/sys.c:1:',
      'src/warn.c: In function ‘main’:',
      'collect2: error: ld returned 1 exit status',
      'make: *** [Makefile:3: all] Error 1',
      'building src/a.c:1:2: error: not at the start',
      'src/a.c:1:2: this is no diagnostic',
      '6 problems',
      '',
    ]) {
      assert.equal(parseDiagnosticLine(line), undefined, line);
    }
  });
});

describe('toRepositoryPath', () => {
  test('makes paths under the workspace relative and keeps relative ones, normalised', () => {
    assert.equal(toRepositoryPath('/workspace/src/a.c', '/workspace'), 'src/a.c');
    assert.equal(toRepositoryPath('/workspace//src/./b/../a.c', '/workspace/'), 'src/a.c');
    assert.equal(toRepositoryPath('./src/a.c', '/workspace'), 'src/a.c');
    assert.equal(toRepositoryPath('src/x/../a.c', '/workspace'), 'src/a.c');
  });

  test('ignores absolute paths elsewhere and paths that climb out of the repository', () => {
    for (const file of ['/usr/include/stdio.h', '/workspace', '/workspace2/a.c', '/workspace/../etc/passwd', '../a.c', 'src/../../a.c', '..', '.', 'a\\b.c']) {
      assert.equal(toRepositoryPath(file, '/workspace'), undefined, file);
    }
  });
});

describe('createAnnotationCollector', () => {
  test('keeps at most maxAnnotations and counts the rest in dropped', () => {
    const collector = createAnnotationCollector({ workspaceDir: CONTAINER_WORKDIR, maxAnnotations: 3 });
    for (let line = 1; line <= 10; line++) collector.add(`src/a.c:${line}:1: warning: unused ${line}`);
    assert.deepEqual(
      collector.annotations.map((a) => a.start_line),
      [1, 2, 3],
    );
    assert.equal(collector.dropped, 7);
  });

  test('drops repeats of the same path, line, level and message without counting them', () => {
    const collector = createAnnotationCollector({ workspaceDir: CONTAINER_WORKDIR, maxAnnotations: 10 });
    collector.add('src/a.c:3:1: warning: unused');
    collector.add('/workspace/src/a.c:3:9: warning: unused');
    collector.add('src/a.c:3:1: error: unused');
    assert.deepEqual(brief(collector.annotations), ['src/a.c:3:1 warning', 'src/a.c:3:1 failure']);
    assert.equal(collector.dropped, 0);
  });

  test('reads each line of a text with newlines', () => {
    const collector = createAnnotationCollector({ workspaceDir: CONTAINER_WORKDIR, maxAnnotations: 10 });
    collector.add('src/a.c:1:1: error: one\nnoise\nsrc/b.c:2:2: note: two\n');
    assert.deepEqual(brief(collector.annotations), ['src/a.c:1:1 failure', 'src/b.c:2:2 notice']);
  });

  test('bounds the message and the title', () => {
    const collector = createAnnotationCollector({ workspaceDir: CONTAINER_WORKDIR, maxAnnotations: 10 });
    collector.add(`src/a.c:1:1: error: ${'m'.repeat(3_000)} [-W${'w'.repeat(500)}]`);
    const [annotation] = collector.annotations;
    assert.equal(annotation?.message.length, MAX_MESSAGE_CHARS);
    assert.ok(annotation.message.endsWith('…'));
    assert.ok((annotation.title?.length ?? 0) <= 255);
  });

  test('gives line 0 as line 1 without a column', () => {
    const annotation = parseAnnotationLine('src/a.js:0:0: Parsing error: bad config [Error]', CONTAINER_WORKDIR);
    assert.deepEqual(annotation, { path: 'src/a.js', start_line: 1, end_line: 1, annotation_level: 'failure', message: 'Parsing error: bad config' });
  });

  test('reads hostile lines in linear time: 1 MB of `a:1:`, of colour codes and of unterminated escapes', () => {
    const collector = createAnnotationCollector({ workspaceDir: CONTAINER_WORKDIR, maxAnnotations: 10 });
    const hostile = [
      'a:1:'.repeat(262_144),
      `src/a.c:1:${'1:'.repeat(500_000)}`,
      'a(1,1)'.repeat(174_763),
      '\u001b[31m'.repeat(200_000),
      '\u001b]'.repeat(500_000),
      `x${':1'.repeat(500_000)}`,
      `a.js:1:1: ${' [Error/'.repeat(125_000)}`,
      `a.ts${'(1,'.repeat(300_000)}`,
    ];
    const started = performance.now();
    for (let round = 0; round < 20; round++) for (const line of hostile) collector.add(line);
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 1_000, `160 hostile lines of ~1 MB took ${elapsed.toFixed(0)} ms`);
    assert.deepEqual(collector.annotations, []);
  });
});

describe('stripAnsi', () => {
  test('removes SGR, erase and OSC hyperlink sequences and keeps the text', () => {
    assert.equal(stripAnsi('\u001b[01m\u001b[Ksrc/a.c:\u001b[m\u001b[K ok'), 'src/a.c: ok');
    assert.equal(stripAnsi('\u001b]8;;file:///workspace/a.c\u0007a.c\u001b]8;;\u0007'), 'a.c');
    assert.equal(stripAnsi('\u001b]8;;x\u001b\\link\u001b]8;;\u001b\\'), 'link');
    assert.equal(stripAnsi('plain'), 'plain');
  });
});

describe('toAnnotationBatches', () => {
  const annotations = Array.from({ length: 123 }, (_, index): CheckAnnotation => ({
    path: 'a.c',
    start_line: index + 1,
    end_line: index + 1,
    annotation_level: 'notice',
    message: 'm',
  }));

  test('splits into requests of at most 50, in order', () => {
    const batches = toAnnotationBatches(annotations);
    assert.deepEqual(
      batches.map((batch) => batch.length),
      [50, 50, 23],
    );
    assert.deepEqual(batches.flat(), annotations);
  });

  test('never makes a batch larger than 50, nor smaller than 1', () => {
    assert.deepEqual(
      toAnnotationBatches(annotations, 500).map((batch) => batch.length),
      [50, 50, 23],
    );
    assert.equal(toAnnotationBatches(annotations.slice(0, 3), 0).length, 3);
    assert.deepEqual(
      toAnnotationBatches(annotations, 40).map((batch) => batch.length),
      [40, 40, 40, 3],
    );
  });

  test('gives no batch for no annotations', () => {
    assert.deepEqual(toAnnotationBatches([]), []);
  });
});
