#!/usr/bin/env node
// The autobuilder command (src/cli/main.ts): `autobuilder --help` lists the commands.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../src/cli/main.ts');
const code = await runCli(process.argv);
// `worker` keeps running until a signal; every other command ends here
if (process.argv[2] !== 'worker') process.exit(code);
