import { createPublicKey, randomBytes, verify, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import ajvFormats from 'ajv-formats';

/** One request the stand-in accepted: it matched an operation of GitHub's REST description and validated. */
export interface RecordedRequest {
  /** HTTP method, upper case (`POST`). */
  method: string;
  /** URL path as received, without the query string (`/repos/o/r/statuses/abc`). */
  path: string;
  /** Query parameters; for a repeated key the last value wins. */
  query: Record<string, string>;
  /** The matched operation's `operationId` (`repos/create-commit-status`). */
  operationId: string;
  /** Path parameters of the matched template, percent-decoded (`{ owner, repo, sha }`). */
  params: Record<string, string>;
  /** Request headers, lower-case names; repeated headers joined with `, `. */
  headers: Record<string, string | undefined>;
  /** Parsed JSON body; a string for text bodies, a Buffer for binary ones, `undefined` when empty. */
  body: unknown;
  /**
   * What the request authenticated with: a GitHub App's JWT, an installation token the
   * stand-in issued (App mode), or any other token (the `authorization` value after its scheme).
   */
  credential: RequestCredential;
}

/** The credential of a recorded request (see {@link RecordedRequest.credential}). */
export type RequestCredential =
  { kind: 'jwt'; appId: number } | { kind: 'installation'; installationId: number; token: string } | { kind: 'token'; token: string };

/** An installation access token the stand-in issued in App mode. */
export interface IssuedToken {
  /** `ghs_` and 36 random characters, as GitHub's look */
  token: string;
  installationId: number;
  issuedAt: Date;
  /**
   * from this moment on the stand-in answers 401 to it (it is `expires_at`, whole seconds); a
   * test may set it earlier to revoke the token
   */
  expiresAt: Date;
}

/**
 * GitHub App mode of the stand-in (https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app).
 * `GET /repos/{owner}/{repo}/installation` and every `/app…` operation answer only a JWT
 * signed (RS256) with the App's key, whose `iss` is the App id, `iat` not more than 60 s in
 * the future, `exp` not past and at most 10 minutes after `iat`; otherwise 401 with GitHub's
 * message. Every other request must carry an installation token the stand-in issued, not
 * expired (401 `Bad credentials` otherwise), for a repository of that installation (403
 * `Resource not accessible by integration` otherwise).
 */
export interface GitHubStandInAppOptions {
  appId: number;
  /** the App's public key (PEM, SPKI or PKCS#1), the pair of the private key the server signs with */
  publicKeyPem: string;
  /** seconds an issued installation token lives; default 3600, as GitHub's */
  tokenTtlSeconds?: number;
  /** `owner/repo` → installation id, for the repositories the App is installed on */
  installations?: Record<string, number>;
}

/** One request the stand-in refused, with the HTTP status it answered and every reason found. */
export interface RejectedRequest {
  /** HTTP method, upper case. */
  method: string;
  /** URL path as received, without the query string. */
  path: string;
  /** The status the stand-in answered with (400, 401, 403, 404, 422 or 500). */
  status: number;
  /** Human-readable reasons, e.g. `body: /state must be equal to one of the allowed values (…)`. */
  errors: string[];
}

/** A canned answer for one request: the HTTP status and the JSON body (none for 204). */
export interface CannedAnswer {
  status: number;
  body?: unknown;
}

/** Chooses the answer to a validated request of one operation; `undefined` keeps the documented example. */
export type CannedResponder = (request: RecordedRequest) => CannedAnswer | undefined;

/**
 * A local HTTP server standing in for api.github.com in tests.
 *
 * Lifecycle: {@link startGitHubStandIn} loads GitHub's official OpenAPI description (once per
 * process), listens, and resolves; `close()` stops it and rejects pending `waitFor` calls; it
 * is idempotent. Every request is matched against the description's operations and validated
 * (path and query parameters, JSON body, `authorization` and `user-agent` headers). Valid
 * requests are recorded in `requests` and answered with the operation's documented success
 * status and example body; invalid ones are recorded in `rejected` and answered with a
 * GitHub-style JSON error. The stand-in deliberately keeps no resource state: a created status
 * cannot be read back, and responses are examples, not the result of earlier requests; a test
 * that needs another answer (existing resources, a 404 for one repository) sets it with `answer`.
 */
export interface GitHubStandIn {
  /** Base URL to give Octokit as `baseUrl`, e.g. `http://127.0.0.1:PORT` (no trailing slash). */
  readonly url: string;
  /** Requests that passed validation, in arrival order (a live view). */
  readonly requests: readonly RecordedRequest[];
  /** Requests that failed validation, with the reasons; each also got a 4xx answer. */
  readonly rejected: readonly RejectedRequest[];
  /** How many requests were answered by `failWith` (they are in neither list). */
  readonly failedCount: number;
  /**
   * Resolves with every recorded request matching `predicate` once at least `count` (default 1)
   * do; rejects with a `GitHubStandInError` (`GITHUB_STAND_IN_TIMEOUT`, listing what was
   * recorded and rejected) after `timeoutMs` (default 30000), or `GITHUB_STAND_IN_CLOSED` on close.
   */
  waitFor(predicate: (r: RecordedRequest) => boolean, count?: number, timeoutMs?: number): Promise<RecordedRequest[]>;
  /**
   * While `status` is set (300–599), answers every request with that status and a JSON error,
   * recording it only in `failedCount`; `null` restores normal answers. Throws
   * `GITHUB_STAND_IN_BAD_STATUS` for other numbers.
   */
  failWith(status: number | null): void;
  /**
   * Answers valid requests of `operationId` (`repos/list-webhooks`) with what `responder`
   * returns instead of the documented example, e.g. existing hooks, or a 404 for one
   * repository. Requests are still validated first, and recorded in `requests` whatever status
   * they are answered with; `failWith` still comes before. A later call for the same operation
   * replaces the responder; `null` removes it. Throws `GITHUB_STAND_IN_UNKNOWN_OPERATION` for an
   * operationId GitHub's description does not have.
   */
  answer(operationId: string, responder: CannedResponder | null): void;
  /** Installation tokens issued so far, oldest first (App mode; empty otherwise). */
  readonly issuedTokens: readonly IssuedToken[];
  /**
   * Installs the App on `repository` (`owner/repo`) as installation `installationId`, or, with
   * null, uninstalls it there. Throws `GITHUB_STAND_IN_NOT_APP` when the stand-in is not in App mode.
   */
  install(repository: string, installationId: number | null): void;
  /** Stops listening, drops open connections and rejects pending `waitFor` calls. */
  close(): Promise<void>;
}

/** Options of {@link startGitHubStandIn}. */
export interface GitHubStandInOptions {
  /** Interface to listen on; default `127.0.0.1`. The port is always chosen by the system. */
  host?: string;
  /** Clock for `created_at`/`updated_at` in answers, JWT checks and token expiry; default `() => new Date()`. */
  now?: () => Date;
  /** GitHub App mode (see {@link GitHubStandInAppOptions}); off by default (any token is accepted). */
  app?: GitHubStandInAppOptions;
}

/** Stable codes of {@link GitHubStandInError}. */
export type GitHubStandInErrorCode =
  | 'GITHUB_STAND_IN_TIMEOUT'
  | 'GITHUB_STAND_IN_CLOSED'
  | 'GITHUB_STAND_IN_BAD_STATUS'
  | 'GITHUB_STAND_IN_UNKNOWN_OPERATION'
  | 'GITHUB_STAND_IN_SPEC_INVALID'
  | 'GITHUB_STAND_IN_NOT_APP';

/** Error raised by the stand-in itself (not by the server under test); match on `code`. */
export class GitHubStandInError extends Error {
  /** Stable string code. */
  readonly code: GitHubStandInErrorCode;

  constructor(code: GitHubStandInErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GitHubStandInError';
    this.code = code;
  }
}

/**
 * Starts a GitHub REST stand-in on `options.host` (default 127.0.0.1), port 0, validating
 * requests against `@octokit/openapi`'s dereferenced api.github.com description. The first call
 * in a process reads and parses that 70 MB file (about a second); later calls reuse it.
 * Rejects with `GITHUB_STAND_IN_SPEC_INVALID` when the description cannot be read.
 */
export async function startGitHubStandIn(options: GitHubStandInOptions = {}): Promise<GitHubStandIn> {
  const host = options.host ?? '127.0.0.1';
  const now = options.now ?? (() => new Date());
  const catalogue = await loadCatalogue();

  const requests: RecordedRequest[] = [];
  const rejected: RejectedRequest[] = [];
  const waiters = new Set<Waiter>();
  const responders = new Map<string, CannedResponder>();
  let failStatus: number | null = null;
  let failedCount = 0;
  let nextId = 1;
  let closed: Promise<void> | undefined;
  let url = '';
  const app = options.app === undefined ? null : createAppMode(options.app);

  const reject = (res: ServerResponse, entry: RejectedRequest, body: Record<string, unknown>): void => {
    rejected.push(entry);
    sendJson(res, entry.status, body);
  };

  const record = (entry: RecordedRequest): void => {
    requests.push(entry);
    for (const waiter of waiters) waiter.check();
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const raw = await readBody(req);
    const method = (req.method ?? 'GET').toUpperCase();
    const target = new URL(req.url ?? '/', 'http://stand-in.invalid');
    const path = target.pathname;

    if (failStatus !== null) {
      failedCount += 1;
      sendJson(res, failStatus, { message: STATUS_CODES[failStatus] ?? 'Error', documentation_url: DOCS_ROOT });
      return;
    }

    const headers = toHeaderRecord(req.headers);
    // GitHub refuses requests without a User-Agent before anything else:
    // https://docs.github.com/en/rest/using-the-rest-api/getting-started-with-the-rest-api#user-agent
    if (!headers['user-agent']) {
      reject(
        res,
        { method, path, status: 403, errors: ['user-agent header is missing'] },
        {
          message:
            'Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required).',
        },
      );
      return;
    }

    const match = findOperation(catalogue, method, path);
    if (match === undefined) {
      reject(
        res,
        { method, path, status: 404, errors: [`no operation matches ${method} ${path}`] },
        {
          message: 'Not Found',
          documentation_url: DOCS_ROOT,
          status: '404',
        },
      );
      return;
    }
    const { operation, params } = match;

    const authorization = headers['authorization'];
    if (authorization === undefined || !AUTHORIZATION.test(authorization)) {
      const reason = authorization === undefined ? 'authorization header is missing' : 'authorization header is not "token X" or "Bearer X"';
      reject(
        res,
        { method, path, status: 401, errors: [reason] },
        {
          message: authorization === undefined ? 'Requires authentication' : 'Bad credentials',
          documentation_url: operation.documentationUrl,
          status: '401',
        },
      );
      return;
    }

    const credential = app === null ? toPlainCredential(authorization) : app.authenticate(operation, params, authorization, now());
    if ('refusal' in credential) {
      const { status, message } = credential.refusal;
      reject(
        res,
        { method, path, status, errors: [`app mode: ${message}`] },
        { message, documentation_url: operation.documentationUrl, status: String(status) },
      );
      return;
    }

    const body = parseBody(operation, headers['content-type'], raw);
    if (!body.ok) {
      reject(
        res,
        { method, path, status: 400, errors: [body.error] },
        {
          message: 'Problems parsing JSON',
          documentation_url: operation.documentationUrl,
          status: '400',
        },
      );
      return;
    }

    let problems: Problem[];
    try {
      problems = validateRequest(catalogue, operation, params, target.searchParams, body);
    } catch (error) {
      const reason = `stand-in could not compile the schemas of ${operation.operationId}: ${error instanceof Error ? error.message : String(error)}`;
      reject(res, { method, path, status: 500, errors: [reason] }, { message: reason });
      return;
    }
    if (problems.length > 0) {
      reject(
        res,
        { method, path, status: 422, errors: problems.map((p) => `${p.location}: ${p.field} ${p.message}`) },
        {
          message: 'Validation Failed',
          errors: problems.map((p) => ({ resource: operation.operationId, code: p.code, field: p.field, message: p.message })),
          documentation_url: operation.documentationUrl,
          status: '422',
        },
      );
      return;
    }

    const recorded: RecordedRequest = {
      method,
      path,
      query: Object.fromEntries(target.searchParams),
      operationId: operation.operationId,
      params,
      headers,
      body: body.value,
      credential,
    };
    record(recorded);
    const canned = responders.get(operation.operationId)?.(recorded) ?? app?.answer(operation, recorded, now());
    if (canned !== undefined) sendCanned(res, canned, { id: nextId++, now: now() });
    else sendSuccess(res, operation, recorded, { id: nextId++, now: now(), url });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { message: error instanceof Error ? error.message : String(error) });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, rejectListen) => {
    server.once('error', rejectListen);
    server.listen(0, host, () => {
      server.off('error', rejectListen);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;

  const describeTraffic = (): string => {
    const lines = [
      `recorded (${requests.length}):`,
      ...requests.map((r) => `  ${r.method} ${r.path} ${r.operationId}`),
      `rejected (${rejected.length}):`,
      ...rejected.map((r) => `  ${r.method} ${r.path} ${r.status} ${r.errors.join('; ')}`),
      `failed by failWith: ${failedCount}`,
    ];
    return lines.join('\n');
  };

  return {
    url,
    get requests() {
      return requests;
    },
    get rejected() {
      return rejected;
    },
    get failedCount() {
      return failedCount;
    },
    waitFor(predicate, count = 1, timeoutMs = 30_000) {
      return new Promise<RecordedRequest[]>((resolve, rejectWait) => {
        if (closed !== undefined) {
          rejectWait(new GitHubStandInError('GITHUB_STAND_IN_CLOSED', 'the GitHub stand-in is closed'));
          return;
        }
        const settle = (outcome: () => void): void => {
          clearTimeout(timer);
          waiters.delete(waiter);
          outcome();
        };
        const waiter: Waiter = {
          check() {
            let matches: RecordedRequest[];
            try {
              matches = requests.filter(predicate);
            } catch (error) {
              settle(() => rejectWait(error));
              return;
            }
            if (matches.length >= count) settle(() => resolve(matches));
          },
          close() {
            settle(() => rejectWait(new GitHubStandInError('GITHUB_STAND_IN_CLOSED', 'the GitHub stand-in closed while waiting')));
          },
        };
        const timer = setTimeout(() => {
          settle(() =>
            rejectWait(
              new GitHubStandInError(
                'GITHUB_STAND_IN_TIMEOUT',
                `timed out after ${timeoutMs} ms waiting for ${count} matching request(s) at the GitHub stand-in; ${describeTraffic()}`,
              ),
            ),
          );
        }, timeoutMs);
        waiters.add(waiter);
        waiter.check();
      });
    },
    failWith(status) {
      if (status !== null && !(Number.isInteger(status) && status >= 300 && status <= 599)) {
        throw new GitHubStandInError('GITHUB_STAND_IN_BAD_STATUS', `failWith needs an HTTP status from 300 to 599 or null, got ${status}`);
      }
      failStatus = status;
    },
    get issuedTokens() {
      return app?.issued ?? [];
    },
    install(repository, installationId) {
      if (app === null) throw new GitHubStandInError('GITHUB_STAND_IN_NOT_APP', 'install() needs a stand-in started with the app option');
      if (installationId === null) app.installations.delete(repository.toLowerCase());
      else app.installations.set(repository.toLowerCase(), installationId);
    },
    answer(operationId, responder) {
      if (![...catalogue.byMethod.values()].some((operations) => operations.some((o) => o.operationId === operationId))) {
        throw new GitHubStandInError('GITHUB_STAND_IN_UNKNOWN_OPERATION', `GitHub's REST description has no operation ${JSON.stringify(operationId)}`);
      }
      if (responder === null) responders.delete(operationId);
      else responders.set(operationId, responder);
    },
    close() {
      closed ??= new Promise<void>((resolve, rejectClose) => {
        for (const waiter of [...waiters]) waiter.close();
        server.close((error) => (error ? rejectClose(error) : resolve()));
        // Keep-alive connections from fetch would otherwise hold close() open.
        server.closeAllConnections();
      });
      return closed;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// App mode: JWTs, installations and installation tokens.

/** What the App mode decided about a request's credential: who it is, or the refusal GitHub would answer. */
type CredentialCheck = RequestCredential | { refusal: { status: 401 | 403; message: string } };

/** GitHub's answers to a JWT it refuses (as its API words them). */
const JWT_UNDECODABLE = 'A JSON web token could not be decoded';
const JWT_IAT_FUTURE = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";
const JWT_EXPIRED = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
const JWT_EXP_TOO_FAR = "'Expiration time' claim ('exp') is too far in the future";

/** Outside App mode any token is accepted: it is recorded as it came. */
function toPlainCredential(authorization: string): RequestCredential {
  return { kind: 'token', token: authorization.replace(/^\S+\s+/, '') };
}

/** The operations only an App's JWT may call: `/app…` and the `…/installation` lookups. */
function needsJwt(operation: Operation): boolean {
  return operation.template === '/app' || operation.template.startsWith('/app/') || operation.template.endsWith('/installation');
}

/**
 * Checks a JWT as GitHub does for an App (https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app):
 * RS256 over `header.payload` with the App's key, `iss` the App id (a number or its decimal
 * string), `iat` at most 60 s ahead of `nowSeconds`, `exp` in the future and at most 600 s after `iat`.
 */
function checkJwt(jwt: string, key: KeyObject, appId: number, nowSeconds: number): string | null {
  const [header = '', payload = '', signature = '', ...rest] = jwt.split('.');
  if (rest.length > 0 || signature === '') return JWT_UNDECODABLE;
  let claims: Record<string, unknown>;
  try {
    const head: unknown = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
    if (!isRecord(head) || head['alg'] !== 'RS256') return JWT_UNDECODABLE;
    if (!verify('RSA-SHA256', Buffer.from(`${header}.${payload}`), key, Buffer.from(signature, 'base64url'))) return JWT_UNDECODABLE;
    const parsed: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    if (!isRecord(parsed)) return JWT_UNDECODABLE;
    claims = parsed;
  } catch {
    return JWT_UNDECODABLE;
  }
  // GitHub cannot tell a key of another App from a wrong `iss`: both are undecodable to it
  if (String(claims['iss']) !== String(appId)) return JWT_UNDECODABLE;
  const { iat, exp } = claims;
  if (typeof iat !== 'number' || !Number.isInteger(iat) || iat > nowSeconds + 60) return JWT_IAT_FUTURE;
  if (typeof exp !== 'number' || exp <= nowSeconds) return JWT_EXPIRED;
  if (exp - iat > 600) return JWT_EXP_TOO_FAR;
  return null;
}

/** The state of the App mode: its key, where it is installed, the tokens it issued. */
function createAppMode(options: GitHubStandInAppOptions) {
  const key = createPublicKey(options.publicKeyPem);
  const ttlMs = (options.tokenTtlSeconds ?? 3600) * 1000;
  const installations = new Map(Object.entries(options.installations ?? {}).map(([repository, id]) => [repository.toLowerCase(), id]));
  const issued: IssuedToken[] = [];
  const byToken = new Map<string, IssuedToken>();
  const installed = (id: number) => [...installations.values()].includes(id);

  return {
    installations,
    issued,
    /** The credential of a request in App mode, or GitHub's refusal of it. */
    authenticate(operation: Operation, params: Record<string, string>, authorization: string, now: Date): CredentialCheck {
      const [, scheme = '', value = ''] = /^(\S+)\s+(\S+)$/.exec(authorization) ?? [];
      if (needsJwt(operation)) {
        // GitHub takes the JWT as a bearer token only
        const problem = scheme.toLowerCase() === 'bearer' ? checkJwt(value, key, options.appId, Math.floor(now.getTime() / 1000)) : JWT_UNDECODABLE;
        return problem === null ? { kind: 'jwt', appId: options.appId } : { refusal: { status: 401, message: problem } };
      }
      const token = byToken.get(value);
      if (token === undefined || now.getTime() >= token.expiresAt.getTime()) return { refusal: { status: 401, message: 'Bad credentials' } };
      const { owner, repo } = params;
      if (owner !== undefined && repo !== undefined && installations.get(`${owner}/${repo}`.toLowerCase()) !== token.installationId) {
        return { refusal: { status: 403, message: 'Resource not accessible by integration' } };
      }
      return { kind: 'installation', installationId: token.installationId, token: token.token };
    },
    /** The answer of the App's own operations: an installation lookup, a new installation token. */
    answer(operation: Operation, recorded: RecordedRequest, now: Date): CannedAnswer | undefined {
      const example = isRecord(operation.success.example) ? operation.success.example : {};
      const notFound = { status: 404, body: { message: 'Not Found', documentation_url: operation.documentationUrl, status: '404' } };
      if (operation.operationId === 'apps/get-repo-installation') {
        const { owner = '', repo = '' } = recorded.params;
        const id = installations.get(`${owner}/${repo}`.toLowerCase());
        if (id === undefined) return notFound;
        const account = isRecord(example['account']) ? example['account'] : {};
        return { status: 200, body: { ...example, id, app_id: options.appId, account: { ...account, login: owner }, repository_selection: 'selected' } };
      }
      if (operation.operationId === 'apps/create-installation-access-token') {
        const id = Number(recorded.params['installation_id']);
        if (!installed(id)) return notFound;
        // GitHub's expires_at has whole seconds; the token expires then, not later
        const expiresAt = new Date(Math.floor((now.getTime() + ttlMs) / 1000) * 1000);
        const token: IssuedToken = { token: `ghs_${randomBytes(18).toString('hex')}`, installationId: id, issuedAt: now, expiresAt };
        issued.push(token);
        byToken.set(token.token, token);
        const { repositories: _repositories, ...rest } = example;
        return {
          status: 201,
          body: {
            ...rest,
            token: token.token,
            expires_at: expiresAt.toISOString().replace(/\.\d{3}Z$/, 'Z'),
            permissions: { checks: 'write', statuses: 'write', contents: 'read', metadata: 'read', pull_requests: 'read' },
            repository_selection: 'selected',
          },
        };
      }
      return undefined;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The catalogue: operations of the OpenAPI description, indexed for matching and validation.

const DOCS_ROOT = 'https://docs.github.com/rest';
const AUTHORIZATION = /^(?:token|bearer)\s+\S+$/i;
const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'] as const;

type JsonObject = Record<string, unknown>;

interface Waiter {
  check(): void;
  close(): void;
}

interface Parameter {
  name: string;
  required: boolean;
  schema: JsonObject;
  /** GitHub's `x-multi-segment`: the value may contain `/` (branch names, file paths). */
  multiSegment: boolean;
}

interface Operation {
  method: string;
  template: string;
  operationId: string;
  documentationUrl: string;
  matcher: RegExp;
  /** Names of the matcher's capture groups, in order. */
  groupNames: string[];
  /** Ranking when several templates match: more literal segments, then more literal characters. */
  literalSegments: number;
  literalChars: number;
  pathParameters: Parameter[];
  queryParameters: Parameter[];
  requestBody: { required: boolean; jsonSchema: JsonObject | undefined; otherTypes: string[] } | undefined;
  success: { status: number; contentType: string | undefined; example: unknown };
}

interface CompiledOperation {
  path: ValidateFunction;
  query: ValidateFunction;
  body: ValidateFunction | undefined;
}

interface Catalogue {
  /** Operations by upper-case method, best-ranked first. */
  byMethod: Map<string, Operation[]>;
  bodyAjv: Ajv;
  /** Coerces strings (query and path values) to the declared types, and scalars to arrays. */
  parameterAjv: Ajv;
  compiled: Map<Operation, CompiledOperation>;
}

// The one piece of module state, deliberately: the description is 70 MB of JSON, and parsing it
// for every stand-in a test suite starts would cost a second each. It is read-only once built.
let cataloguePromise: Promise<Catalogue> | undefined;

function loadCatalogue(): Promise<Catalogue> {
  cataloguePromise ??= buildCatalogue().catch((error: unknown) => {
    cataloguePromise = undefined;
    throw new GitHubStandInError('GITHUB_STAND_IN_SPEC_INVALID', 'could not load the GitHub OpenAPI description', { cause: error });
  });
  return cataloguePromise;
}

async function buildCatalogue(): Promise<Catalogue> {
  const file = createRequire(import.meta.url).resolve('@octokit/openapi/generated/api.github.com.deref.json');
  const spec: unknown = JSON.parse(await readFile(file, 'utf8'));
  if (!isRecord(spec) || !isRecord(spec['paths'])) throw new Error(`${file} has no "paths" object`);

  const byMethod = new Map<string, Operation[]>();
  for (const [template, pathItem] of Object.entries(spec['paths'])) {
    if (!isRecord(pathItem)) continue;
    const shared = Array.isArray(pathItem['parameters']) ? pathItem['parameters'] : [];
    for (const method of HTTP_METHODS) {
      const raw = pathItem[method];
      if (!isRecord(raw)) continue;
      const operation = toOperation(template, method.toUpperCase(), raw, shared);
      const list = byMethod.get(operation.method) ?? [];
      list.push(operation);
      byMethod.set(operation.method, list);
    }
  }
  for (const list of byMethod.values()) {
    list.sort((a, b) => b.literalSegments - a.literalSegments || b.literalChars - a.literalChars);
  }

  return { byMethod, bodyAjv: createAjv(false), parameterAjv: createAjv('array'), compiled: new Map() };
}

function createAjv(coerceTypes: false | 'array'): Ajv {
  const ajv = new Ajv({ strict: false, allErrors: true, coerceTypes });
  // ajv-formats is CommonJS; under NodeNext its plugin is the `default` property.
  ajvFormats.default(ajv);
  // GitHub's own format for "owner/name" (used by the dependency graph API).
  ajv.addFormat('repo.nwo', /^[^/\s]+\/[^/\s]+$/);
  return ajv;
}

function toOperation(template: string, method: string, raw: JsonObject, shared: unknown[]): Operation {
  const parameters = [...shared, ...(Array.isArray(raw['parameters']) ? raw['parameters'] : [])].filter(isRecord);
  const toParameter = (p: JsonObject): Parameter => ({
    name: String(p['name']),
    required: p['required'] === true,
    schema: isRecord(p['schema']) ? p['schema'] : {},
    multiSegment: p['x-multi-segment'] === true,
  });
  const pathParameters = parameters.filter((p) => p['in'] === 'path').map(toParameter);
  const queryParameters = parameters.filter((p) => p['in'] === 'query').map(toParameter);
  const multiSegment = new Set(pathParameters.filter((p) => p.multiSegment).map((p) => p.name));

  const groupNames: string[] = [];
  let literalSegments = 0;
  let literalChars = 0;
  const source = template
    .split('/')
    .map((segment) => {
      if (!segment.includes('{')) {
        literalSegments += 1;
        literalChars += segment.length;
        return escapeRegExp(segment);
      }
      // A segment may mix parameters and literals: `/compare/{base}...{head}`.
      return segment.replace(/\{([^}]+)\}|[^{]+/g, (text, name: string | undefined) => {
        if (name === undefined) {
          literalChars += text.length;
          return escapeRegExp(text);
        }
        groupNames.push(name);
        return multiSegment.has(name) ? '(.+)' : '([^/]+)';
      });
    })
    .join('/');

  const externalDocs = raw['externalDocs'];
  const documentationUrl = isRecord(externalDocs) && typeof externalDocs['url'] === 'string' ? externalDocs['url'] : DOCS_ROOT;

  let requestBody: Operation['requestBody'];
  const rawBody = raw['requestBody'];
  if (isRecord(rawBody) && isRecord(rawBody['content'])) {
    const content = rawBody['content'];
    const json = content['application/json'];
    requestBody = {
      required: rawBody['required'] === true,
      jsonSchema: isRecord(json) && isRecord(json['schema']) ? json['schema'] : undefined,
      otherTypes: Object.keys(content).filter((type) => type !== 'application/json'),
    };
  }

  return {
    method,
    template,
    operationId: typeof raw['operationId'] === 'string' ? raw['operationId'] : `${method} ${template}`,
    documentationUrl,
    matcher: new RegExp(`^${source}$`),
    groupNames,
    literalSegments,
    literalChars,
    pathParameters,
    queryParameters,
    requestBody,
    success: toSuccess(raw['responses']),
  };
}

/** The lowest documented 2xx answer and its example; 200 with no body when only redirects are documented. */
function toSuccess(responses: unknown): Operation['success'] {
  const codes = isRecord(responses)
    ? Object.keys(responses)
        .filter((code) => /^2\d\d$/.test(code))
        .sort()
    : [];
  const code = codes[0];
  // Archive and log downloads document only a 302 to a storage URL; answer as if it was followed.
  if (code === undefined || !isRecord(responses)) return { status: 200, contentType: 'application/octet-stream', example: '' };
  const response = responses[code];
  const content = isRecord(response) && isRecord(response['content']) ? response['content'] : {};
  const contentType = 'application/json' in content ? 'application/json' : Object.keys(content)[0];
  const media = contentType === undefined ? undefined : content[contentType];
  let example: unknown;
  if (isRecord(media)) {
    const examples = media['examples'];
    const first = isRecord(examples) ? Object.values(examples)[0] : undefined;
    example = isRecord(first) && 'value' in first ? first['value'] : media['example'];
  }
  return { status: Number(code), contentType, example };
}

function findOperation(catalogue: Catalogue, method: string, path: string): { operation: Operation; params: Record<string, string> } | undefined {
  for (const operation of catalogue.byMethod.get(method) ?? []) {
    const found = operation.matcher.exec(path);
    if (found === null) continue;
    const params: Record<string, string> = {};
    try {
      operation.groupNames.forEach((name, index) => {
        params[name] = decodeURIComponent(found[index + 1] ?? '');
      });
    } catch {
      continue; // malformed percent-encoding: GitHub answers 404 too
    }
    return { operation, params };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Validation.

interface Problem {
  location: 'path' | 'query' | 'body';
  field: string;
  code: 'missing_field' | 'invalid';
  message: string;
}

type ParsedBody = { ok: true; value: unknown; validate: boolean } | { ok: false; error: string };

function parseBody(operation: Operation, contentType: string | undefined, raw: Buffer): ParsedBody {
  const mediaType = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  const declared = operation.requestBody;
  if (declared !== undefined && declared.otherTypes.includes(mediaType)) {
    return { ok: true, value: mediaType.startsWith('text/') ? raw.toString('utf8') : raw, validate: false };
  }
  if (raw.length === 0) return { ok: true, value: undefined, validate: declared?.jsonSchema !== undefined };
  try {
    return { ok: true, value: JSON.parse(raw.toString('utf8')), validate: declared?.jsonSchema !== undefined };
  } catch (error) {
    if (declared?.jsonSchema === undefined) return { ok: true, value: raw.toString('utf8'), validate: false };
    return { ok: false, error: `body is not valid JSON: ${error instanceof Error ? error.message : String(error)}` };
  }
}

function validateRequest(
  catalogue: Catalogue,
  operation: Operation,
  params: Record<string, string>,
  searchParams: URLSearchParams,
  body: { value: unknown; validate: boolean },
): Problem[] {
  const compiled = compileOperation(catalogue, operation);
  const problems: Problem[] = [];

  // Ajv coerces in place, so validate copies and record the strings as received.
  if (!compiled.path({ ...params })) problems.push(...toProblems('path', compiled.path.errors));

  const query: JsonObject = {};
  for (const parameter of operation.queryParameters) {
    if (parameter.schema['type'] === 'array') {
      // Octokit joins arrays with commas; browsers and GitHub's docs repeat `name[]=`.
      const values = [...searchParams.getAll(parameter.name), ...searchParams.getAll(`${parameter.name}[]`)].flatMap((v) => v.split(','));
      if (values.length > 0) query[parameter.name] = values;
    } else {
      const value = searchParams.get(parameter.name);
      if (value !== null) query[parameter.name] = value;
    }
  }
  if (!compiled.query(query)) problems.push(...toProblems('query', compiled.query.errors));

  if (body.validate && compiled.body !== undefined) {
    // An empty body is checked as `{}`, so a missing required property is named in the errors.
    const required = operation.requestBody?.required === true;
    if (body.value !== undefined || required) {
      if (!compiled.body(body.value ?? {})) problems.push(...toProblems('body', compiled.body.errors));
    }
  }
  return problems;
}

function compileOperation(catalogue: Catalogue, operation: Operation): CompiledOperation {
  const cached = catalogue.compiled.get(operation);
  if (cached !== undefined) return cached;
  const objectOf = (parameters: Parameter[]): JsonObject => ({
    type: 'object',
    properties: Object.fromEntries(parameters.map((p) => [p.name, toJsonSchema(p.schema)])),
    required: parameters.filter((p) => p.required).map((p) => p.name),
  });
  const jsonSchema = operation.requestBody?.jsonSchema;
  const compiled: CompiledOperation = {
    path: catalogue.parameterAjv.compile(objectOf(operation.pathParameters)),
    query: catalogue.parameterAjv.compile(objectOf(operation.queryParameters)),
    body: jsonSchema === undefined ? undefined : catalogue.bodyAjv.compile(toJsonSchema(jsonSchema)),
  };
  catalogue.compiled.set(operation, compiled);
  return compiled;
}

/**
 * Rewrites an OpenAPI 3.0 schema object into plain JSON Schema. The description is OpenAPI
 * 3.0.3 and marks null with `nullable: true` (no 3.1 type arrays). Ajv's own `nullable` support
 * throws on the 13 nullable schemas without `type` (`oneOf` + nullable, e.g. an issue's
 * `milestone`) and, following 3.0.3 to the letter, still rejects null for the 11 nullable enums
 * that do not list null (e.g. an issue's `state_reason`), which GitHub accepts. So:
 * `{type: T, nullable}` → `{type: [T, 'null']}` (adding null to any `enum`), and a nullable
 * schema without `type` → `{anyOf: [{type: 'null'}, schema]}`. Examples and `x-*` extensions
 * are dropped; everything else is kept.
 */
function toJsonSchema(schema: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'nullable' || key === 'example' || key === 'examples' || key.startsWith('x-')) continue;
    out[key] =
      SUBSCHEMA_MAPS.has(key) && isRecord(value)
        ? Object.fromEntries(Object.entries(value).map(([name, sub]) => [name, isRecord(sub) ? toJsonSchema(sub) : sub]))
        : SUBSCHEMA_LISTS.has(key) && Array.isArray(value)
          ? value.map((sub: unknown) => (isRecord(sub) ? toJsonSchema(sub) : sub))
          : SUBSCHEMA_KEYS.has(key) && isRecord(value)
            ? toJsonSchema(value)
            : value;
  }
  if (schema['nullable'] !== true) return out;
  const type = out['type'];
  if (type === undefined) {
    const { description, title, ...rest } = out;
    return { ...(description === undefined ? {} : { description }), ...(title === undefined ? {} : { title }), anyOf: [{ type: 'null' }, rest] };
  }
  const types: unknown[] = Array.isArray(type) ? type : [type];
  if (!types.includes('null')) out['type'] = [...types, 'null'];
  const allowed = out['enum'];
  if (Array.isArray(allowed) && !allowed.includes(null)) out['enum'] = [...allowed, null];
  return out;
}

const SUBSCHEMA_MAPS = new Set(['properties', 'patternProperties', 'definitions', '$defs']);
const SUBSCHEMA_LISTS = new Set(['oneOf', 'anyOf', 'allOf', 'items', 'prefixItems']);
const SUBSCHEMA_KEYS = new Set(['items', 'additionalProperties', 'not', 'if', 'then', 'else', 'contains', 'propertyNames']);

function toProblems(location: Problem['location'], errors: ErrorObject[] | null | undefined): Problem[] {
  return (errors ?? []).map((error) => {
    const missing = error.keyword === 'required' && typeof error.params['missingProperty'] === 'string' ? String(error.params['missingProperty']) : undefined;
    const pointer = error.instancePath === '' ? '' : error.instancePath.slice(1).replaceAll('/', '.');
    const field = missing === undefined ? pointer || '(root)' : [pointer, missing].filter((s) => s !== '').join('.');
    const allowed =
      error.keyword === 'enum' && Array.isArray(error.params['allowedValues']) ? ` (${error.params['allowedValues'].map(String).join(', ')})` : '';
    const message = missing === undefined ? `${error.message ?? 'is invalid'}${allowed}` : 'is required';
    return { location, field, code: missing === undefined ? 'invalid' : 'missing_field', message };
  });
}

// ---------------------------------------------------------------------------------------------
// Answers.

/** Operations whose answer echoes the request rather than the spec's example. */
const ECHOES: Record<string, (recorded: RecordedRequest, example: JsonObject, extra: { id: number; now: Date; url: string }) => JsonObject> = {
  'repos/create-commit-status': (recorded, example, { id, now, url }) => {
    const body = isRecord(recorded.body) ? recorded.body : {};
    const { owner = '', repo = '', sha = '' } = recorded.params;
    return {
      ...example,
      url: `${url}/repos/${owner}/${repo}/statuses/${sha}`,
      id,
      node_id: Buffer.from(`StatusContext${id}`).toString('base64'),
      state: body['state'],
      context: body['context'] ?? 'default',
      target_url: body['target_url'] ?? null,
      description: body['description'] ?? null,
      created_at: now.toISOString(),
      updated_at: now.toISOString(),
    };
  },
};

function setGitHubHeaders(res: ServerResponse, extra: { id: number; now: Date }): void {
  res.setHeader('x-github-request-id', `STAND-IN:${extra.id}`);
  res.setHeader('x-ratelimit-limit', '5000');
  res.setHeader('x-ratelimit-remaining', '4999');
  res.setHeader('x-ratelimit-used', '1');
  res.setHeader('x-ratelimit-resource', 'core');
  res.setHeader('x-ratelimit-reset', String(Math.floor(extra.now.getTime() / 1000) + 3600));
}

function sendCanned(res: ServerResponse, canned: CannedAnswer, extra: { id: number; now: Date }): void {
  setGitHubHeaders(res, extra);
  if (canned.status === 204 || canned.status === 304) res.writeHead(canned.status).end();
  else sendJson(res, canned.status, canned.body ?? {});
}

function sendSuccess(res: ServerResponse, operation: Operation, recorded: RecordedRequest, extra: { id: number; now: Date; url: string }): void {
  const { status, contentType, example } = operation.success;
  const echo = ECHOES[operation.operationId];
  setGitHubHeaders(res, extra);
  if (status === 204 || status === 205 || recorded.method === 'HEAD') {
    res.writeHead(status).end();
  } else if (echo !== undefined) {
    const answer = echo(recorded, isRecord(example) ? example : {}, extra);
    if (typeof answer['url'] === 'string') res.setHeader('location', answer['url']);
    sendJson(res, status, answer);
  } else if (contentType !== undefined && contentType !== 'application/json' && typeof example === 'string') {
    res.writeHead(status, { 'content-type': contentType }).end(example);
  } else {
    sendJson(res, status, example ?? {});
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) }).end(text);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks);
}

function toHeaderRecord(headers: IncomingHttpHeaders): Record<string, string | undefined> {
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, Array.isArray(value) ? value.join(', ') : value]));
}

function isRecord(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
