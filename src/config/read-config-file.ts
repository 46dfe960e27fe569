import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { AppError, toMessage } from '../errors.js';
import { loadConfig } from './load-config.js';
import type { Config } from './schema.js';

/** The server settings as the server reads them, and the file they came from. */
export interface ConfigFile {
  config: Readonly<Config>;
  /** the absolute path of the config module; null when there is none (the embedded defaults) */
  file: string | null;
}

/**
 * Reads the server settings as `npm start` does: the module `AUTOBUILDER_CONFIG`, else
 * `./config.ts` (resolved against the working directory; absent means the embedded defaults),
 * validated by {@link loadConfig} with the secrets of `env`. A `file` given instead must exist.
 *
 * @throws AppError `CONFIG_INVALID` when the module cannot be read, a given `file` is missing, or the settings do not validate
 */
export async function readConfigFile(options: { file?: string | undefined; env?: NodeJS.ProcessEnv } = {}): Promise<ConfigFile> {
  const env = options.env ?? process.env;
  const file = resolve(options.file ?? env['AUTOBUILDER_CONFIG'] ?? 'config.ts');
  if (!existsSync(file)) {
    // a file given as an argument must be there; the server's own (from the environment or the default) may be missing
    if (options.file !== undefined) throw new AppError('CONFIG_INVALID', `${file} does not exist`);
    return { config: loadConfig({}, env), file: null };
  }
  return { config: loadConfig((await importConfigModule(file)).default, env), file };
}

/**
 * Imports the config module `file`. From source (tsx), or a `.js`/`.mjs` file: a plain
 * import. Compiled (`node dist/main.js`), Node 20 cannot import a TypeScript file itself:
 * a short-lived child process imports it through tsx and hands its default export over as
 * JSON (the config is plain data), so that tsx's loader thread (about 15 MiB) is not kept
 * for the life of the server.
 *
 * @throws AppError `CONFIG_INVALID` with the child's report when it fails
 */
export async function importConfigModule(file: string): Promise<{ default?: unknown }> {
  const url = pathToFileURL(file).href;
  if (import.meta.url.endsWith('.ts') || !/\.[mc]?ts$/.test(file)) {
    return (await import(url).catch((err: unknown) => {
      throw new AppError('CONFIG_INVALID', `${file} could not be read: ${toMessage(err)}`, { cause: err });
    })) as { default?: unknown };
  }
  const script = `const m = await import(${JSON.stringify(url)}); process.stdout.write(JSON.stringify({ default: m.default }));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', import.meta.resolve('tsx'), '--input-type=module', '-e', script], {
    maxBuffer: 16 * 1024 ** 2,
  }).catch((err: unknown) => {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    // the child's own report of the problem (esbuild's "file:line:column: ERROR: …")
    const problem = (/^.*ERROR:.*$/m.exec(stderr) ?? /^\w*Error:.*$/m.exec(stderr))?.[0] ?? (stderr.trim() || toMessage(err));
    throw new AppError('CONFIG_INVALID', `${file} could not be read: ${problem}`, { cause: err });
  });
  return JSON.parse(stdout) as { default?: unknown };
}
