import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { CliError, EXIT } from './exit-codes.js';

/** The server a command talks to when no flag, env variable or config file names one: `npm start`'s default listen address. */
export const DEFAULT_SERVER_URL = 'http://127.0.0.1:8462';

/** The program-wide options every command takes (registered by {@link addGlobalOptions}). */
export interface GlobalOptions {
  /** server base URL, e.g. `https://ci.example.com` */
  url?: string;
  /** the server's API token (`api.token`), sent as `Authorization: Bearer` */
  token?: string;
  /** print one JSON document on stdout instead of text */
  json?: boolean;
}

/** Where the server URL and the token of a command come from, once resolved. */
export interface Connection {
  /** base URL without a trailing slash */
  url: string;
  /** null when none was given: reads work on a server without page credentials, writes answer 403/401 */
  token: string | null;
  /** where `url` came from: a flag, an env variable, the config file, or the default */
  urlSource: '--url' | 'AUTOBUILDER_URL' | 'config file' | 'default';
}

const cliFileSchema = z
  .object({
    url: z.string().min(1).optional(),
    token: z.string().min(1).optional(),
  })
  .strict();

/**
 * The CLI's config file: `$XDG_CONFIG_HOME/autobuilder/cli.json` when XDG_CONFIG_HOME is set
 * (XDG Base Directory Specification), else `~/.config/autobuilder/cli.json`.
 */
export function toCliConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env['XDG_CONFIG_HOME'] !== undefined && env['XDG_CONFIG_HOME'] !== '' ? env['XDG_CONFIG_HOME'] : join(homedir(), '.config');
  return join(base, 'autobuilder', 'cli.json');
}

/**
 * Reads the CLI config file `{ "url"?: string, "token"?: string }`; a missing file is `{}`.
 * @throws CliError (exit 2) when the file cannot be read or is not that shape
 */
export function readCliConfigFile(path: string): z.infer<typeof cliFileSchema> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new CliError(EXIT.usage, `cannot read ${path}: ${(err as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CliError(EXIT.usage, `${path} is not JSON: ${(err as Error).message}`);
  }
  const parsed = cliFileSchema.safeParse(value);
  if (!parsed.success) {
    throw new CliError(EXIT.usage, `${path}: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'file'}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}

const nonEmpty = (value: string | undefined): string | undefined => (value === undefined || value === '' ? undefined : value);

/**
 * Resolves the server URL and the API token, each from the first of: the flag (`--url`,
 * `--token`), the env (`AUTOBUILDER_URL`, `AUTOBUILDER_API_TOKEN`), the config file
 * ({@link toCliConfigPath}); the URL falls back to {@link DEFAULT_SERVER_URL}. The config file
 * is read only when a flag and env leave something open.
 * @throws CliError (exit 2) for a URL that is not http(s) or an unreadable config file
 */
export function resolveConnection(
  flags: Pick<GlobalOptions, 'url' | 'token'>,
  env: NodeJS.ProcessEnv = process.env,
  configPath = toCliConfigPath(env),
): Connection {
  let url = nonEmpty(flags.url);
  let urlSource: Connection['urlSource'] = '--url';
  if (url === undefined && nonEmpty(env['AUTOBUILDER_URL']) !== undefined) {
    url = env['AUTOBUILDER_URL'];
    urlSource = 'AUTOBUILDER_URL';
  }
  let token = nonEmpty(flags.token) ?? nonEmpty(env['AUTOBUILDER_API_TOKEN']);
  if (url === undefined || token === undefined) {
    const file = readCliConfigFile(configPath);
    if (url === undefined && file.url !== undefined) {
      url = file.url;
      urlSource = 'config file';
    }
    token ??= file.token;
  }
  if (url === undefined) {
    url = DEFAULT_SERVER_URL;
    urlSource = 'default';
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CliError(EXIT.usage, `the server URL ${JSON.stringify(url)} (from ${urlSource}) is not a URL; give e.g. --url http://127.0.0.1:8462`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new CliError(EXIT.usage, `the server URL ${JSON.stringify(url)} (from ${urlSource}) must be http or https`);
  }
  if (parsed.username !== '' || parsed.password !== '') {
    throw new CliError(EXIT.usage, `the server URL (from ${urlSource}) must not carry credentials; give the API token with --token or AUTOBUILDER_API_TOKEN`);
  }
  return { url: `${parsed.origin}${parsed.pathname.replace(/\/+$/, '')}`, token: token ?? null, urlSource };
}

/** A command's failure that the server answered: its HTTP status and the error's stable `code` (exit 3). */
export class ServerError extends CliError {
  /** the HTTP status; 0 when the server could not be reached */
  readonly status: number;
  /** the server's error code (`NOT_FOUND`, `BACKLOG_FULL`…), `UNREACHABLE` or `BAD_ANSWER` */
  readonly code: string;
  constructor(status: number, code: string, message: string, options: { cause?: unknown } = {}) {
    super(EXIT.server, message, options);
    this.name = 'ServerError';
    this.status = status;
    this.code = code;
  }
}

/** Query parameters; undefined ones are left out. */
export type Query = Readonly<Record<string, string | number | boolean | undefined>>;

/** One request of {@link ApiClient}. */
export interface RequestOptions {
  method?: 'GET' | 'POST';
  query?: Query;
  /** sent as JSON */
  body?: unknown;
  headers?: Readonly<Record<string, string>>;
  signal?: AbortSignal;
}

/**
 * A small HTTP client of the autobuilder API over fetch. Every method sends the token as
 * `Authorization: Bearer` when there is one, and throws {@link ServerError} (exit 3) for a
 * server that cannot be reached (`UNREACHABLE`), an error answer (its `{ error: { code,
 * message } }`, never a stack) or an answer that is not the expected JSON (`BAD_ANSWER`).
 * An abort through `signal` rejects with the signal's reason, untouched.
 */
export interface ApiClient {
  readonly url: string;
  /** Sends a request and returns the response when its status is 2xx/3xx; the body is left for the caller to read or stream. */
  request(path: string, options?: RequestOptions): Promise<Response>;
  /** Sends a request and parses its JSON answer with `schema`; also returns the status (200, 202…). */
  json<T>(path: string, schema: z.ZodType<T>, options?: RequestOptions): Promise<{ status: number; body: T }>;
  /** `GET path` parsed with `schema`. */
  get<T>(path: string, schema: z.ZodType<T>, options?: Omit<RequestOptions, 'method' | 'body'>): Promise<T>;
}

const errorBodySchema = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

/** The reason a fetch failed to reach the server, e.g. `connect ECONNREFUSED 127.0.0.1:1`. */
function toNetworkReason(err: unknown): string {
  const cause = err instanceof Error ? err.cause : undefined;
  if (cause instanceof Error) {
    // undici wraps the socket error: the cause carries the system error's message
    const nested = cause instanceof AggregateError ? cause.errors.find((e): e is Error => e instanceof Error) : undefined;
    return (nested ?? cause).message;
  }
  return err instanceof Error ? err.message : String(err);
}

/** Makes the {@link ApiClient} of one connection; `fetch` is injectable for unit tests of callers. */
export function createApiClient(connection: Pick<Connection, 'url' | 'token'>, fetchFn: typeof fetch = fetch): ApiClient {
  const toUrl = (path: string, query: Query | undefined): URL => {
    const url = new URL(`${connection.url}${path}`);
    for (const [key, value] of Object.entries(query ?? {})) if (value !== undefined) url.searchParams.set(key, String(value));
    return url;
  };
  const hint = (status: number): string => {
    if (status === 401) return ' (give the API token with --token, AUTOBUILDER_API_TOKEN or the CLI config file)';
    return '';
  };

  async function request(path: string, options: RequestOptions = {}): Promise<Response> {
    const url = toUrl(path, options.query);
    const headers: Record<string, string> = { Accept: 'application/json', ...options.headers };
    if (connection.token !== null) headers['Authorization'] = `Bearer ${connection.token}`;
    if (options.body !== undefined) headers['Content-Type'] = 'application/json';
    let response: Response;
    try {
      response = await fetchFn(url, {
        method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
        headers,
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
        ...(options.signal === undefined ? {} : { signal: options.signal }),
        redirect: 'follow',
      });
    } catch (err) {
      if (options.signal?.aborted === true) throw options.signal.reason;
      throw new ServerError(0, 'UNREACHABLE', `cannot reach the autobuilder server at ${connection.url}: ${toNetworkReason(err)}`, { cause: err });
    }
    if (response.status < 400) return response;
    const text = await response.text().catch(() => '');
    let parsed: z.infer<typeof errorBodySchema> | null = null;
    try {
      const result = errorBodySchema.safeParse(JSON.parse(text));
      if (result.success) parsed = result.data;
    } catch {
      // not JSON: a proxy's page, say; the status line tells enough
    }
    const code = parsed?.error.code ?? `HTTP_${response.status}`;
    const message = parsed?.error.message ?? response.statusText;
    const method = options.method ?? (options.body === undefined ? 'GET' : 'POST');
    throw new ServerError(response.status, code, `${method} ${url.pathname}: ${response.status} ${code}: ${message}${hint(response.status)}`);
  }

  async function json<T>(path: string, schema: z.ZodType<T>, options: RequestOptions = {}): Promise<{ status: number; body: T }> {
    const response = await request(path, options);
    let value: unknown;
    try {
      value = await response.json();
    } catch (err) {
      if (options.signal?.aborted === true) throw options.signal.reason;
      throw new ServerError(response.status, 'BAD_ANSWER', `${path}: the server's answer is not JSON (is ${connection.url} an autobuilder server?)`, {
        cause: err,
      });
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      const first = parsed.error.issues[0];
      throw new ServerError(
        response.status,
        'BAD_ANSWER',
        `${path}: unexpected answer from the server (${first === undefined ? 'wrong shape' : `${first.path.join('.')}: ${first.message}`}); is it another autobuilder version?`,
      );
    }
    return { status: response.status, body: parsed.data };
  }

  return {
    url: connection.url,
    request,
    json,
    get: async (path, schema, options = {}) => (await json(path, schema, { ...options, method: 'GET' })).body,
  };
}

/** ANSI styles; each is the identity when colours are off. */
export interface Styles {
  bold(text: string): string;
  dim(text: string): string;
  red(text: string): string;
  green(text: string): string;
  yellow(text: string): string;
}

const ansi = (open: number, close: number) => (text: string) => `\x1b[${open}m${text}\x1b[${close}m`;
const plain = (text: string) => text;

/**
 * Whether to colour a stream: only a TTY, and never when `NO_COLOR` is set to anything but
 * the empty string (https://no-color.org).
 */
export function isColorWanted(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  return stream.isTTY === true && (env['NO_COLOR'] === undefined || env['NO_COLOR'] === '');
}

/** What a command prints, and how: one JSON document with `--json`, text otherwise. */
export interface CliOutput {
  /** true with `--json` */
  readonly json: boolean;
  /** styles for stdout (identity unless stdout is a colour TTY) */
  readonly style: Styles;
  /** styles for stderr */
  readonly errStyle: Styles;
  /** Prints the command's result: `document` as JSON with `--json`, else the text `human()` makes (a trailing newline is added). */
  result(document: unknown, human: () => string): void;
  /** Writes text to stdout as is (a followed log); with `--json` it goes to stderr, so stdout stays one JSON document. */
  write(text: string): void;
  /** A progress line on stderr (queue position, downloads); left out with `--json`. */
  note(text: string): void;
  /** A warning line on stderr, also with `--json`. */
  warn(text: string): void;
}

/** Makes the {@link CliOutput} of one command; the streams and env are injectable for tests. */
export function createCliOutput(options: {
  json: boolean;
  stdout?: NodeJS.WritableStream & { isTTY?: boolean };
  stderr?: NodeJS.WritableStream & { isTTY?: boolean };
  env?: NodeJS.ProcessEnv;
}): CliOutput {
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const env = options.env ?? process.env;
  const stylesFor = (stream: { isTTY?: boolean }): Styles =>
    isColorWanted(stream, env)
      ? { bold: ansi(1, 22), dim: ansi(2, 22), red: ansi(31, 39), green: ansi(32, 39), yellow: ansi(33, 39) }
      : { bold: plain, dim: plain, red: plain, green: plain, yellow: plain };
  const errStyle = stylesFor(stderr);
  return {
    json: options.json,
    style: stylesFor(stdout),
    errStyle,
    result(document, human) {
      if (options.json) {
        stdout.write(`${JSON.stringify(document, null, 2)}\n`);
        return;
      }
      const text = human();
      stdout.write(text.endsWith('\n') || text === '' ? text : `${text}\n`);
    },
    write(text) {
      (options.json ? stderr : stdout).write(text);
    },
    note(text) {
      if (!options.json) stderr.write(`${text}\n`);
    },
    warn(text) {
      stderr.write(`${errStyle.yellow('warning:')} ${text}\n`);
    },
  };
}

/** What a command that talks to a server gets: its connection, API client and output. */
export interface CliContext {
  connection: Connection;
  api: ApiClient;
  out: CliOutput;
}

/** Collaborators of {@link createCliContext}, for tests; each defaults to the process's own. */
export interface CliContextDeps {
  env?: NodeJS.ProcessEnv;
  fetch?: typeof fetch;
  stdout?: NodeJS.WritableStream & { isTTY?: boolean };
  stderr?: NodeJS.WritableStream & { isTTY?: boolean };
}

/** The global options as `command` sees them (its own and its parents'). */
export function globalOptionsOf(command: Command): GlobalOptions {
  const all = command.optsWithGlobals<Record<string, unknown>>();
  const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
  const options: GlobalOptions = { json: all['json'] === true };
  const url = text(all['url']);
  const token = text(all['token']);
  if (url !== undefined) options.url = url;
  if (token !== undefined) options.token = token;
  return options;
}

/**
 * The context of a command action: call it with the action's `Command` (commander passes it
 * last). The connection is resolved here, once (the config file is read at most once).
 * @throws CliError (exit 2) for a bad URL or config file
 */
export function createCliContext(command: Command, deps: CliContextDeps = {}): CliContext {
  const options = globalOptionsOf(command);
  const env = deps.env ?? process.env;
  const connection = resolveConnection(options, env);
  return {
    connection,
    api: createApiClient(connection, deps.fetch),
    out: createCliOutput({
      json: options.json === true,
      env,
      ...(deps.stdout === undefined ? {} : { stdout: deps.stdout }),
      ...(deps.stderr === undefined ? {} : { stderr: deps.stderr }),
    }),
  };
}

/** Adds the global options (`--url`, `--token`, `--json`) to the program; every command sees them through {@link globalOptionsOf}. */
export function addGlobalOptions(program: Command): Command {
  return program
    .option('--url <url>', `server URL (else AUTOBUILDER_URL, the CLI config file, or ${DEFAULT_SERVER_URL})`)
    .option('--token <token>', 'API token (else AUTOBUILDER_API_TOKEN or the CLI config file; prefer those: a flag shows in ps)')
    .option('--json', 'print one JSON document on stdout (for scripts)');
}
