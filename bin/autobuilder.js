#!/usr/bin/env node
// The autobuilder command: `autobuilder worker` runs a build worker (see README, Scaling out).
import { register } from 'tsx/esm/api';

register();
const args = process.argv.slice(2);
const command = args[0] ?? '';
const rest = args.slice(1);
if (command === 'worker') {
  const { runWorkerCommand } = await import('../src/worker/main.ts');
  process.argv = [process.argv[0], process.argv[1], ...rest];
  await runWorkerCommand();
} else {
  process.stderr.write(`usage: autobuilder worker\n  runs a build worker: its configuration is worker.config.ts (or AUTOBUILDER_WORKER_CONFIG)\n`);
  process.exit(command === '' || command === '--help' || command === '-h' ? 0 : 2);
}
