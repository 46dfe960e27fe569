/**
 * The README's main job: on the embedded defaults, start autobuilder, make a local git
 * repository of the example project (scripts/demo-project, built by
 * projects-config-repo-example/octocat/hello-make/main.yaml), send it a signed push webhook
 * (GitHub's own example push payload, rewritten), follow the build log, and print the
 * artifact's digest and URLs. Run again, it pushes a new commit and builds incrementally.
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

async function main(): Promise<void> {
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
    if (done.state !== 'success') throw new Error(`the build ended ${done.state}`);
    for (const artifact of done.artifacts) {
      const bytes = Buffer.from(await (await fetch(artifact.url)).arrayBuffer());
      const digest = createHash('sha256').update(bytes).digest('hex');
      say(`artifact ${artifact.name}: ${artifact.size} bytes, sha256:${artifact.digest} (download verified: ${digest === artifact.digest})`);
      say(`artifact URL: ${artifact.url}`);
    }
    say(`build page: ${done.pageUrl}`);
  } finally {
    await server.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`[demo] failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
