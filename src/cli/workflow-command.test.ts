import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { escapeWorkflowData, escapeWorkflowProperty, toErrorAnnotation } from './workflow-command.js';

describe('workflow commands', () => {
  test('escapes %, CR and LF in a message and leaves : and , alone', () => {
    assert.equal(escapeWorkflowData('100% done\r\nnext: a, b'), '100%25 done%0D%0Anext: a, b');
  });

  test('escapes : and , in a property too, and % before the others', () => {
    assert.equal(escapeWorkflowProperty('a:b,c%0A\n'), 'a%3Ab%2Cc%250A%0A');
  });

  test('an annotation names file, line and title, each escaped, and the escaped message', () => {
    assert.equal(
      toErrorAnnotation({ file: 'acme/w,x/main.yaml', line: 7, title: 'env.A:B', message: 'must be a string\nnot 1%' }),
      '::error file=acme/w%2Cx/main.yaml,line=7,title=env.A%3AB::must be a string%0Anot 1%25',
    );
  });

  test('an annotation without a line or a file leaves them out', () => {
    assert.equal(
      toErrorAnnotation({ file: 'a/b/c.yaml', line: null, title: 'build definition', message: 'too big' }),
      '::error file=a/b/c.yaml,title=build definition::too big',
    );
    assert.equal(
      toErrorAnnotation({ file: '', line: null, title: 'build definition', message: 'too many files' }),
      '::error title=build definition::too many files',
    );
  });
});
