import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { Build } from '../src/builds/build.js';
import { createBuildId } from '../src/builds/coordinator.js';
import { launchBrowser, openPage, waitForExpression } from './support/browser.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

// Page code runs in the browser: it is passed to playwright as strings (the test project has
// no DOM types).

describe('the /monitor page and the build page in a real browser', () => {
  let f: FixtureServer;
  let browser: Browser;
  let shots: string;
  let chattyId: string;

  before(async () => {
    // one build at a time, so a second push waits in the queue where the page can see it
    f = await startFixtureServer('monitor', { jobConcurrency: 1 });
    browser = await launchBrowser();
    shots = join(f.dir, 'screenshots');
    await mkdir(shots, { recursive: true });
  });
  after(async () => {
    await browser.close();
    await f.close();
  });

  const shoot = (page: Page, name: string) => page.screenshot({ path: join(shots, name), fullPage: true });

  /** Pushes `branch` at `sha`; resolves with the id of the build it queued. */
  const push = async (branch: string, sha: string): Promise<string> => {
    const queued = new Promise<string>((resolve) => {
      const listener = (b: Build) => {
        if (b.ref !== `refs/heads/${branch}` || b.sha !== sha) return;
        f.server.events.off('build.queued', listener);
        resolve(b.id);
      };
      f.server.events.on('build.queued', listener);
    });
    const response = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: `refs/heads/${branch}`, sha, cloneUrl: f.cloneUrl }),
    });
    assert.equal(response.status, 202);
    return queued;
  };

  /** The highest "chatty line N" the running card of `id` shows, or 0. */
  const lastTailLine = (page: Page, id: string) =>
    page.evaluate(
      `Math.max(0, ...[...document.querySelectorAll('#running article[data-build-id="${id}"] .tail-line')].map((l) => Number((/^chatty line (\\d+) /.exec(l.textContent) || [])[1] || 0)))`,
    ) as Promise<number>;

  test('shows a webhook build queued, then running with its log arriving live, then success', async () => {
    const { page, problems } = await openPage(browser);
    const response = await page.goto(`${f.server.url}/monitor`);
    const csp = response?.headers()['content-security-policy'] ?? '';
    assert.match(csp, /default-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    await page.waitForSelector('#connection.conn-live');
    assert.equal(await page.isVisible('#workers-section'), false, 'no Workers table when builds run here');
    // record every state the history table shows for every build, as the page changes
    await page.evaluate(`(() => {
      window.__seen = [];
      const last = {};
      const record = () => {
        for (const row of document.querySelectorAll('#history tr[data-build-id]')) {
          const { buildId, state } = row.dataset;
          if (last[buildId] !== state) { last[buildId] = state; window.__seen.push(buildId + ' ' + state); }
        }
      };
      new MutationObserver(record).observe(document.body, { subtree: true, childList: true, attributes: true });
    })()`);

    const sha = f.repo.head as string;
    const slowStarted = new Promise<string>((resolve) => {
      const listener = (b: Build) => {
        if (b.ref !== 'refs/heads/slow') return;
        f.server.events.off('build.started', listener);
        resolve(b.id);
      };
      f.server.events.on('build.started', listener);
    });
    const slowId = await push('slow', sha);
    assert.equal(await slowStarted, slowId);
    // the only slot is taken: this one waits in the queue
    chattyId = await push('chatty', sha);

    await page.waitForSelector(`#queued tr[data-build-id="${chattyId}"]`);
    const waiting = await page.textContent(`#queued tr[data-build-id="${chattyId}"]`);
    assert.match(waiting ?? '', /waiting for a free slot: 1 of 1 running|resolving its inputs|checking the build cache/);
    await shoot(page, 'monitor-1-queued.png');

    await waitForExpression(
      page,
      `document.querySelector('#running article[data-build-id="${chattyId}"] .tail-line') !== null && /chatty line/.test(document.querySelector('#running article[data-build-id="${chattyId}"] pre').textContent)`,
      30_000,
    );
    const firstSeen = await lastTailLine(page, chattyId);
    assert.ok(firstSeen < 150, `the page saw line ${firstSeen} while the build ran`);
    await shoot(page, 'monitor-2-running.png');
    // more lines arrive while the same card is still up: the tail is live
    await waitForExpression(
      page,
      `(() => { const card = document.querySelector('#running article[data-build-id="${chattyId}"]'); if (!card) return false; return Math.max(0, ...[...card.querySelectorAll('.tail-line')].map((l) => Number((/^chatty line (\\d+) /.exec(l.textContent) || [])[1] || 0))) >= ${firstSeen + 20}; })()`,
      30_000,
    );
    const coloured = await page.evaluate(
      `[...document.querySelectorAll('#running article[data-build-id="${chattyId}"] .a-fg-1.a-b')].map((e) => e.textContent)`,
    );
    assert.ok((coloured as string[]).includes('bold red'), 'ANSI colours in the tail');

    await page.waitForSelector(`#history tr[data-build-id="${chattyId}"][data-state="success"]`, { timeout: 30_000 });
    await page.waitForSelector(`#running article[data-build-id="${chattyId}"]`, { state: 'detached' });
    await shoot(page, 'monitor-3-success.png');

    const seen = (await page.evaluate('window.__seen')) as string[];
    assert.deepEqual(
      seen.filter((s) => s.startsWith(`${chattyId} `)).map((s) => s.split(' ')[1]),
      ['queued', 'running', 'success'],
    );
    assert.deepEqual(problems, []);
    await page.context().close();
  });

  test('a log with <script>, HTML entities, ANSI colours and a javascript: link renders as coloured text and runs nothing', async () => {
    const sha = f.repo.head as string;
    const { page, problems } = await openPage(browser, `${f.server.url}/monitor`);
    await page.waitForSelector('#connection.conn-live');
    const id = await push('hostile', sha);
    const build = await f.waitForBuild((b) => b.id === id);
    assert.equal(build.state, 'success');

    const response = await page.goto(`${f.server.url}/builds/${id}`);
    assert.match(response?.headers()['content-security-policy'] ?? '', /default-src 'self'/);
    await page.waitForSelector('#log .line >> text=hostile 7');
    const lineText = (n: number) =>
      page.evaluate(`[...document.querySelectorAll('#log .line .lt')].map((e) => e.textContent).find((t) => t.startsWith('hostile ${n} '))`) as Promise<
        string | undefined
      >;
    assert.equal(await lineText(1), 'hostile 1 <script>alert(1)</script>');
    assert.equal(await lineText(2), 'hostile 2 <img src=x onerror="alert(2)"> <b>not bold</b>');
    assert.equal(await lineText(3), 'hostile 3 &amp; &lt;script&gt; &#60;i&#62; entities stay as written');
    assert.equal(await lineText(4), 'hostile 4 red bold green orange on navy');
    assert.equal(await lineText(5), 'hostile 5 click me and the docs');
    assert.equal(await lineText(6), `hostile 6 <svg onload=alert(4)> "quotes" 'single' </pre></div>`);
    assert.equal(await lineText(7), 'hostile 7 cursor moves gone');

    // nothing became an element, except the one safe link
    assert.equal(
      await page.evaluate(`document.querySelectorAll('#log script, #log img, #log svg, #log b, #log iframe, #log .lt *:not(span):not(a)').length`),
      0,
    );
    assert.equal(await page.evaluate(`document.querySelectorAll('script:not([src])').length`), 0);
    assert.deepEqual(await page.evaluate(`[...document.querySelectorAll('#log a:not(.ln)')].map((a) => a.href)`), ['https://example.com/docs']);
    assert.equal(await page.evaluate(`document.querySelectorAll('a[href^="javascript" i]').length`), 0);
    assert.equal(await page.evaluate(`document.querySelector('#log .a-link-blocked').textContent`), 'click me');
    // colours: classes for the 16 colours, CSSOM values for 256 and true colour
    assert.equal(
      await page.evaluate(`getComputedStyle([...document.querySelectorAll('#log .a-fg-1')].find((e) => e.textContent === 'red')).color`),
      'rgb(240, 98, 90)',
    );
    assert.equal(
      await page.evaluate(`getComputedStyle([...document.querySelectorAll('#log .a-b.a-fg-2')].find((e) => e.textContent === 'bold green')).fontWeight`),
      '700',
    );
    assert.equal(await page.evaluate(`[...document.querySelectorAll('#log span')].find((e) => e.textContent === 'orange').style.color`), 'rgb(255, 135, 0)');
    assert.equal(
      await page.evaluate(`[...document.querySelectorAll('#log span')].find((e) => e.textContent === 'on navy').style.backgroundColor`),
      'rgb(0, 0, 139)',
    );
    await page.click('#log .a-link-blocked');
    assert.equal(page.url(), `${f.server.url}/builds/${id}`);
    assert.match(await page.title(), /^success · acme\/widget hostile/);
    await shoot(page, 'build-hostile.png');

    // the raw log is plain text the browser will not sniff into HTML
    const raw = await fetch(build.logUrl);
    assert.equal(raw.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(raw.headers.get('x-content-type-options'), 'nosniff');
    assert.deepEqual(problems, []);
    await page.context().close();
  });

  test('a link to a line (#L120) opens the log there, highlighted; line numbers are links', async () => {
    assert.ok(chattyId, 'needs the chatty build');
    const { page, problems } = await openPage(browser, `${f.server.url}/builds/${chattyId}#L120`);
    const line = page.locator('#L120');
    await line.waitFor();
    assert.match((await line.getAttribute('class')) ?? '', /\bhl\b/);
    assert.match((await line.textContent()) ?? '', /^120/);
    const box = await line.boundingBox();
    const view = await page.locator('#log').boundingBox();
    assert.ok(box && view && box.y >= view.y && box.y + box.height <= view.y + view.height, 'line 120 is in view');
    assert.equal(await page.isChecked('#follow'), false, 'a line link turns follow off');
    await shoot(page, 'build-line-anchor.png');
    await page.click('#L125 a.ln');
    await page.waitForSelector('#L125.hl');
    assert.match(page.url(), /#L125$/);
    assert.deepEqual(problems, []);
    await page.context().close();
  });

  test('the build page follows a running build live and ends on its final state', async () => {
    const sha = await f.repo.commit({ 'message.txt': 'another chatty version\n' }, 'chatty again');
    const id = await push('chatty', sha);
    const { page, problems } = await openPage(browser, `${f.server.url}/builds/${id}`);
    await page.waitForSelector('#log .line');
    await waitForExpression(page, `/chatty line \\d+ of 150/.test(document.querySelector('#log').textContent)`, 30_000);
    assert.notEqual(await page.textContent('[data-field="state"]'), 'success', 'the page opened before the build ended');
    await shoot(page, 'build-live.png');
    await page.waitForSelector('[data-field="state"].state-success', { timeout: 30_000 });
    assert.equal(await page.isVisible('[data-field="worker"]'), false, 'no worker row for a build that ran here');
    // follow kept the end in view: the last lines are on screen
    await page.waitForSelector('#log .line >> text=chatty line 150 of 150');
    assert.equal(await page.isChecked('#follow'), true);
    const api = (await (await fetch(`${f.server.url}/api/builds/${id}/log/lines?tail=30`)).json()) as { start: number; lines: string[] };
    const shown = (await page.evaluate(
      `[...document.querySelectorAll('#log .line')].map((row) => [Number(row.id.slice(1)), row.querySelector('.lt').textContent])`,
    )) as [number, string][];
    const byNumber = new Map(shown);
    for (const [i, text] of api.lines.entries()) {
      const n = api.start + i;
      // oxlint-disable-next-line no-control-regex -- ANSI colour codes start with ESC
      if (byNumber.has(n)) assert.equal(byNumber.get(n), text.replace(/\x1b\[[0-9;]*m/g, ''), `line ${n}`);
    }
    assert.ok(byNumber.has(api.start + api.lines.length - 1), 'the last line is drawn');
    assert.match((await page.textContent('[data-field="artifacts"]')) ?? '', /result\.txt/);
    await shoot(page, 'build-live-done.png');
    assert.deepEqual(problems, []);
    await page.context().close();
  });

  test('a 100 MB log opens at its tail at once, keeps only the rows on screen, and jumps anywhere', async () => {
    const template = f.server.store.get(chattyId);
    assert.ok(template);
    const id = createBuildId();
    const lines = 1_000_000;
    f.server.store.insert({ ...template, id, definition: 'big-log', context: 'autobuilder/big-log', queuedAt: new Date().toISOString() });
    const path = join(f.dir, 'data', 'logs', `${id}.log`);
    const out = createWriteStream(path);
    const pad = 'x'.repeat(70);
    for (let start = 1; start <= lines; start += 10_000) {
      let chunk = '';
      for (let n = start; n < start + 10_000; n++) chunk += `big line ${String(n).padStart(7, '0')} \x1b[36m${pad}\x1b[0m\n`;
      if (!out.write(chunk)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
    try {
      const { page, problems } = await openPage(browser);
      const started = Date.now();
      await page.goto(`${f.server.url}/builds/${id}`);
      await page.waitForSelector('#log .line >> text=big line 1000000');
      const tailMs = Date.now() - started;
      assert.ok(tailMs < 5000, `the tail of a 100 MB log showed after ${tailMs} ms`);
      const rows = (await page.evaluate(`document.querySelectorAll('#log .line').length`)) as number;
      assert.ok(rows > 10 && rows < 200, `${rows} rows in the DOM`);
      await shoot(page, 'build-100mb-tail.png');

      // scrolling up fetches earlier lines on its own
      const before = (await page.evaluate(`Number(document.querySelector('#log .line').id.slice(1))`)) as number;
      await page.evaluate(`document.querySelector('#log').scrollTop = 0`);
      await waitForExpression(page, `Number(document.querySelector('#log .line').id.slice(1)) < ${before - 500}`, 5000);

      for (const n of [1, 500_000]) {
        const jumped = Date.now();
        await page.evaluate(`location.hash = '#L${n}'`);
        await page.waitForSelector(`#L${n}.hl`, { timeout: 5000 });
        assert.ok(Date.now() - jumped < 3000, `jump to line ${n} took ${Date.now() - jumped} ms`);
        assert.match((await page.textContent(`#L${n} .lt`)) ?? '', new RegExp(`^big line ${String(n).padStart(7, '0')} `));
      }
      const heap = (await page.evaluate('performance.memory.usedJSHeapSize')) as number;
      assert.ok(heap < 64 * 1024 * 1024, `page heap ${Math.round(heap / 1024 / 1024)} MB`);
      await shoot(page, 'build-100mb-middle.png');
      assert.deepEqual(problems, []);
      await page.context().close();
    } finally {
      await rm(path, { force: true });
    }
  });
});
