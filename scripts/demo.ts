/**
 * The README's main job: on the embedded defaults, start autobuilder, make a local git
 * repository of the example project (scripts/demo-project, built by
 * projects-config-repo-example/octocat/hello-make/main.yaml), send it a signed push webhook
 * (GitHub's own example push payload, rewritten), follow the build log, and print the
 * artifact's digest and URLs. Run again, it pushes a new commit and builds incrementally.
 *
 * Then it keeps the server up, so the build page and /monitor URLs it printed work, until
 * Ctrl-C (SIGINT) or SIGTERM close it cleanly. `--exit` ends after the build instead (for
 * scripts and tests), and so does a run whose stdin is not a terminal (nobody is there to
 * press Ctrl-C: CI, a pipe) unless `--serve` asks to keep serving. Exit code 0 when the build
 * succeeded, else 1.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ensureWebhookSecret, loadConfig } from '../src/config/index.js';
import { createLogger } from '../src/logger.js';
import { startServer } from '../src/server.js';
import type { BuildView } from '../src/http/build-view.js';
import { createGitRepository } from '../test/support/git-repository.js';
import { deliver, pushPayload } from '../test/support/webhook-delivery.js';

const say = (text: string) => process.stdout.write(`\x1b[1m[demo]\x1b[0m ${text}\n`);

/** Whether the demo keeps serving after the build: `--exit` no, `--serve` yes, else only with a terminal on stdin. */
function keepsServing(argv: readonly string[]): boolean {
  const unknown = argv.filter((a) => a !== '--exit' && a !== '--serve');
  if (unknown.length > 0 || (argv.includes('--exit') && argv.includes('--serve'))) {
    throw new Error(`usage: npm run demo [-- --exit | --serve] (got ${argv.join(' ')})`);
  }
  if (argv.includes('--exit')) return false;
  return argv.includes('--serve') || process.stdin.isTTY;
}

/** Resolves at the first SIGINT or SIGTERM (a second one ends the process at once). */
function untilStopped(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      process.once('SIGINT', () => process.exit(130));
      resolve(signal);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

async function main(): Promise<number> {
  const serve = keepsServing(process.argv.slice(2));
  const root = resolve(import.meta.dirname, '..');
  process.chdir(root);
  const dataDir = resolve('data');
  const repoDir = join(dataDir, 'demo', 'hello-make');
  const cloneUrl = 'https://github.com/octocat/hello-make.git';
  // The embedded defaults, plus one clone-URL rewrite: the example project lives in a
  // local git repository instead of on GitHub.
  const config = loadConfig({ cloneUrlRewrites: [{ from: cloneUrl, to: `file://${repoDir}` }] }, {});
  const secret = await ensureWebhookSecret(config.github.webhookSecret, dataDir);
  say(`webhook secret: ${secret.file ?? 'from the configuration'}`);

  const fresh = !existsSync(join(repoDir, '.git'));
  const repo = await createGitRepository(repoDir, fresh ? join(root, 'scripts', 'demo-project') : undefined);
  const sha = fresh
    ? (repo.head as string)
    : await repo.commit(
        { 'greeting.c': `#include "greeting.h"\n\nconst char *greeting(void) {\n  return "Hello again, built at ${new Date().toISOString()}";\n}\n` },
        'change the greeting',
      );
  say(`${fresh ? 'created' : 'committed to'} the example repository ${repoDir} at ${sha}`);

  const server = await startServer(config, { log: createLogger({ level: 'warn' }), webhookSecret: secret.secret });
  say(`autobuilder listening on ${server.url} (snapshot driver: ${server.snapshotDriver})`);
  let succeeded = false;
  try {
    const payload = pushPayload({ owner: 'octocat', repo: 'hello-make', ref: 'refs/heads/main', sha, tree: await repo.treeOf(sha), cloneUrl });
    const delivery = await deliver(server.url, { event: 'push', payload, secret: secret.secret });
    say(`POST /hooks/github (push, delivery ${delivery.deliveryId}) → ${delivery.status} ${JSON.stringify(delivery.body)}`);
    if (delivery.status !== 202) throw new Error('the webhook was not accepted');

    let build: BuildView | undefined;
    for (let i = 0; i < 100 && build === undefined; i++) {
      const list = (await (await fetch(`${server.url}/api/builds?repo=octocat/hello-make&limit=20`)).json()) as { builds: BuildView[] };
      build = list.builds.find((b) => b.sha === sha);
      if (build === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    if (build === undefined) throw new Error('no build was queued for the push');
    say(`build ${build.id} queued (${build.context}); log follows`);
    const log = await fetch(`${build.logUrl}?follow=1`);
    for await (const chunk of log.body as unknown as AsyncIterable<Uint8Array>)
      process.stdout.write(
        `  | ${Buffer.from(chunk)
          .toString('utf8')
          .replace(/\n(?=.)/g, '\n  | ')}`,
      );

    const done = (await (await fetch(`${server.url}/api/builds/${build.id}`)).json()) as BuildView;
    say(`build ${done.id}: ${done.state} (${done.description ?? ''}), incremental: ${done.incremental}`);
    succeeded = done.state === 'success';
    if (!succeeded) process.stderr.write(`[demo] failed: the build ended ${done.state}\n`);
    for (const artifact of done.artifacts) {
      const bytes = Buffer.from(await (await fetch(artifact.url)).arrayBuffer());
      const digest = createHash('sha256').update(bytes).digest('hex');
      say(`artifact ${artifact.name}: ${artifact.size} bytes, sha256:${artifact.digest} (download verified: ${digest === artifact.digest})`);
      say(`artifact URL: ${artifact.url}`);
    }
    say(`build page: ${done.pageUrl}`);
    say(`monitor: ${server.publicUrl}/monitor`);
    if (serve) {
      say(`the command line reads from it too: node bin/autobuilder.js --url ${server.url} list (or status ${done.id}, logs ${done.id})`);
      say('serving until Ctrl-C');
      const signal = await untilStopped();
      say(`${signal}: closing the server`);
    } else if (!process.argv.includes('--exit')) {
      say('stdin is not a terminal: closing the server (npm run demo -- --serve keeps it up)');
    }
  } finally {
    await server.close();
  }
  return succeeded ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`[demo] failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
