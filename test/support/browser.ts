import { chromium, type Browser, type BrowserContextOptions, type Page } from 'playwright-core';

/** Debian's chromium (scripts/host-setup.sh installs it); playwright-core drives it, nothing is downloaded. */
export const CHROMIUM = '/usr/bin/chromium';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** Launches headless Chromium. */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS });
}

/** A page and everything that went wrong on it: dialogs (dismissed), uncaught errors, console errors (CSP violations among them). */
export interface WatchedPage {
  page: Page;
  problems: string[];
}

/** Opens a new page in its own context that records its problems; `url` is loaded when given. */
export async function openPage(browser: Browser, url?: string, options: BrowserContextOptions = {}): Promise<WatchedPage> {
  const context = await browser.newContext({ viewport: { width: 1300, height: 1000 }, ...options });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('dialog', (dialog) => {
    problems.push(`dialog ${dialog.type()}: ${dialog.message()}`);
    void dialog.dismiss();
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  if (url !== undefined) await page.goto(url);
  return { page, problems };
}

/**
 * Polls `expression` (JavaScript, evaluated in the page) until it is truthy, every 50 ms, and
 * returns its value. Unlike page.waitForFunction it works on pages whose CSP forbids eval.
 * @throws Error when `timeoutMs` passes first
 */
export async function waitForExpression<T = unknown>(page: Page, expression: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = (await page.evaluate(expression)) as T;
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`not true within ${timeoutMs} ms: ${expression}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
