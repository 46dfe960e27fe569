import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createHostGuard, toHostName } from './host-guard.js';

describe('createHostGuard', () => {
  test('on 0.0.0.0 or :: allows any IP literal and the publicUrl host, but no other name', () => {
    for (const listenHost of ['0.0.0.0', '::']) {
      const allows = createHostGuard({ listenHost, publicUrl: 'https://ci.example.test/' });
      for (const host of ['10.1.2.3:8462', '192.168.0.7', '[fe80::1]:8462', '[::1]', 'localhost:8462', 'ci.example.test'])
        assert.equal(allows(host), true, `${listenHost} ${host}`);
      for (const host of ['attacker.example', 'attacker.example:8462', '10.1.2.3.attacker.example', ''])
        assert.equal(allows(host), false, `${listenHost} ${host}`);
    }
  });

  test('on a named listen host allows that name only, and no loopback address', () => {
    const allows = createHostGuard({ listenHost: 'ci.lan' });
    assert.equal(allows('ci.lan:8462'), true);
    assert.equal(allows('ci.lan.'), true);
    assert.equal(allows('127.0.0.1'), false);
    assert.equal(allows('attacker.example'), false);
  });

  test('allows a request without Host (HTTP/1.0, never a browser)', () => {
    assert.equal(createHostGuard({ listenHost: '127.0.0.1' })(undefined), true);
  });

  test('reads names, ports, IPv6 brackets and a trailing dot out of a Host header', () => {
    assert.equal(toHostName('Example.COM:80'), 'example.com');
    assert.equal(toHostName('example.com.'), 'example.com');
    assert.equal(toHostName('[::1]:8462'), '::1');
    assert.equal(toHostName('user@example.com'), null);
    assert.equal(toHostName('a b'), null);
  });
});
