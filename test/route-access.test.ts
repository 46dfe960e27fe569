import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Router from '@koa/router';
import Koa from 'koa';
import type { BuildView } from '../src/http/build-view.js';
import { createPageAuth } from '../src/http/page-auth.js';
import { assertRoutesGuarded, createRouteGuards, type DeclaredRoute, type RouteAccess } from '../src/http/route-access.js';
import { startFixtureServer, type FixtureServer } from './support/fixture-server.js';
import { deliver, pushPayload } from './support/webhook-delivery.js';

const credentials = { username: 'ops', password: 'correct horse battery staple' };
const apiToken = 'route-access-api-token-0123456789';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/**
 * The access each route of today is meant to have. A route missing here is held to the access
 * it declares (every route must declare one); a route listed here must declare this one.
 */
const POLICY: Record<string, RouteAccess> = {
  'POST /hooks/github': 'open',
  'GET /healthz': 'open',
  'GET /metrics': 'open',
  'GET /assets/:name': 'open',
  'GET /api/artifacts/:digest': 'open',
  'GET /badge': 'open',
  'GET /monitor': 'protected',
  'GET /builds/:id': 'protected',
  'GET /build/status': 'protected',
  'GET /build/history': 'protected',
  'GET /api/builds': 'protected',
  'GET /api/builds/:id': 'protected',
  'GET /api/builds/:id/log': 'protected',
  'GET /api/builds/:id/log/lines': 'protected',
  'GET /api/builds/:id/artifacts/:name': 'protected',
  'GET /api/repos/:owner/:repo/artifacts/:name': 'protected',
  'GET /api/queue': 'protected',
  'GET /api/config': 'protected',
  'GET /api/github': 'protected',
  'GET /api/config/match': 'protected',
  'GET /api/webhooks': 'protected',
  'POST /api/builds': 'token',
  'POST /api/builds/:id/rebuild': 'token',
  'POST /api/builds/:id/cancel': 'token',
  'POST /api/config/reload': 'token',
  'GET /api/workers': 'protected',
  'POST /api/workers/heartbeat': 'worker',
  'PUT /api/workers/builds/:id/artifacts/:name': 'worker',
};

/** Query strings a route needs to answer 200 rather than 400. */
const QUERIES: Record<string, string> = {
  '/api/repos/:owner/:repo/artifacts/:name': '?ref=refs/heads/main',
  '/api/config/match': '?repo=acme/widget&ref=refs/heads/main',
  '/api/builds/:id/log/lines': '?tail=10',
};

/** Param values of one route that differ from the build's (`:name` of an asset is not an artifact's). */
const ROUTE_PARAMS: Record<string, Record<string, string>> = {
  '/assets/:name': { name: 'app.css' },
};

/** Bodies for the writes: each is refused after the guard (400, 409) so walking does no work. */
const BODIES: Record<string, string> = {
  '/api/builds': '{}',
  '/api/builds/:id/rebuild': '{"force":"yes"}',
  '/hooks/github': '{}',
};

/** `GET /badge` for the badge's RegExp route, `GET /x/:id` for a template (HEAD is GET's). */
function keyOf(route: DeclaredRoute, method: string): string {
  const path = typeof route.path === 'string' ? route.path : /^\^\\\/([a-z]+)/.exec(route.path.source)?.[1] === 'badge' ? '/badge' : String(route.path);
  return `${method === 'HEAD' ? 'GET' : method} ${path}`;
}

interface Answer {
  status: number;
  text: string;
  code: string | null;
  challenge: string | null;
}

describe('route access with page credentials and an API token', () => {
  let f: FixtureServer;
  let build: BuildView;
  let socketToken: string;
  const params: Record<string, string> = { owner: 'acme', repo: 'widget' };

  const call = async (method: string, path: string, authorization: string | null, body?: string): Promise<Answer> => {
    const headers: Record<string, string> = {};
    if (authorization !== null) headers['authorization'] = authorization;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(`${f.server.url}${path}`, {
      method,
      headers,
      ...(body === undefined || method === 'GET' || method === 'HEAD' ? {} : { body }),
    });
    const text = await response.text();
    let code: string | null = null;
    try {
      code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? null;
    } catch {
      // not JSON
    }
    return { status: response.status, text, code, challenge: response.headers.get('www-authenticate') };
  };

  before(async () => {
    f = await startFixtureServer('route-access', { pages: { credentials }, api: { token: apiToken } });
    const sha = f.repo.head as string;
    const pushed = await deliver(f.server.url, {
      event: 'push',
      secret: f.secret,
      payload: pushPayload({ owner: 'acme', repo: 'widget', ref: 'refs/heads/main', sha, cloneUrl: f.cloneUrl }),
    });
    assert.equal(pushed.status, 202);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const listed = await call('GET', '/api/builds?repo=acme/widget', basic(credentials.username, credentials.password));
      const found =
        listed.status === 200
          ? (JSON.parse(listed.text) as { builds: BuildView[] }).builds.find((b) => b.sha === sha && !['queued', 'running'].includes(b.state))
          : undefined;
      if (found !== undefined) {
        build = found;
        break;
      }
      if (Date.now() > deadline) throw new Error(`no finished build within 60 s; last answer ${listed.status}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(build.state, 'success');
    const artifact = build.artifacts[0];
    assert.ok(artifact !== undefined, 'the build has an artifact');
    Object.assign(params, { id: build.id, digest: artifact.digest, sha: build.sha, name: artifact.name });
    const page = await call('GET', '/monitor', basic(credentials.username, credentials.password));
    socketToken = /<meta name="autobuilder-socket-token" content="([^"]+)">/.exec(page.text)?.[1] ?? '';
    assert.ok(socketToken.length >= 40, 'the authenticated /monitor page carries the socket token');
  });
  after(async () => {
    await f.close();
  });

  /** Every route with its expected access and one request per method, params filled in. */
  const walk = () =>
    f.server.routes.flatMap((route) =>
      route.methods.map((method) => {
        const key = keyOf(route, method);
        const expected = POLICY[key] ?? route.access;
        const template = typeof route.path === 'string' ? route.path : null;
        return {
          route,
          method,
          key,
          expected,
          template,
          query: template === null ? '' : (QUERIES[template] ?? ''),
          body: template === null ? undefined : BODIES[template],
        };
      }),
    );

  /** The path of `template` with params filled in, in the spellings a router may accept. */
  const spellings = (template: string | null): string[] => {
    if (template === null) return ['/badge/acme/widget/main.svg', '/BADGE/acme/widget/main.svg', '/Badge/acme/widget/main.svg/'];
    const segments = template.split('/').slice(1);
    const fill = (shape: (segment: string, index: number) => string) =>
      `/${segments.map((s, i) => (s.startsWith(':') ? (ROUTE_PARAMS[template]?.[s.slice(1)] ?? params[s.slice(1)] ?? assert.fail(`no value for the param ${s} of ${template}: add one`)) : shape(s, i))).join('/')}`;
    const forms = [
      fill((s) => s),
      fill((s) => s.toUpperCase()),
      fill((s) => s.charAt(0).toUpperCase() + s.slice(1)),
      fill((s, i) => (i === 0 ? s.toUpperCase() : s)),
      fill((s, i) => (i === segments.length - 1 ? s.toUpperCase() : s)),
      fill((s, i) => (i === 0 ? `%${s.charCodeAt(0).toString(16).toUpperCase()}${s.slice(1)}` : s)),
    ];
    return [...new Set([...forms, ...forms.map((p) => `${p}/`), `/${forms[0]}`])];
  };

  const authorizationFor = (access: RouteAccess | null): string | null =>
    access === 'token' ? `Bearer ${apiToken}` : access === 'protected' ? basic(credentials.username, credentials.password) : null;

  test('every route of the app declares open, protected or token access, and the sensitive ones the right one', () => {
    assert.ok(f.server.routes.length >= 20, `the walk sees the app's routes (${f.server.routes.length})`);
    for (const { route, key, expected } of walk()) {
      assert.notEqual(route.access, null, `${key} declares no access`);
      assert.equal(route.access, expected, `${key} declares ${String(route.access)}, the policy is ${String(expected)}`);
    }
  });

  test('no spelling of a protected or token route answers without credentials, and none hands out the socket token', async (t) => {
    const leaks: string[] = [];
    let tried = 0;
    for (const { method, key, expected, template, query, body } of walk()) {
      if (expected === null) {
        leaks.push(`${key}: no access declared or known`);
        continue;
      }
      for (const spelling of spellings(template)) {
        const path = `${spelling}${query}`;
        tried += 1;
        const anonymous = await call(method, path, null, body);
        if (anonymous.text.includes(socketToken)) leaks.push(`${method} ${path}: the socket token without credentials`);
        if (expected === 'open') continue;
        // a HEAD answer has no body to tell a 404 of the router from one of a handler
        const routed = !(anonymous.status === 404 && (anonymous.code === 'NOT_FOUND' || method === 'HEAD'));
        if (anonymous.status !== 401 && routed) {
          leaks.push(`${method} ${path} (${expected}): ${anonymous.status} without credentials`);
          continue;
        }
        if (anonymous.status === 401) {
          if (method !== 'HEAD' && anonymous.code !== 'UNAUTHORIZED') leaks.push(`${method} ${path}: 401 with code ${String(anonymous.code)}`);
          if (!(expected === 'token' || expected === 'worker' ? /^Bearer / : /^Basic realm="autobuilder"/).test(anonymous.challenge ?? ''))
            leaks.push(`${method} ${path}: challenge ${String(anonymous.challenge)}`);
          // this server has no build workers: no token passes a worker route's guard here
          if (expected === 'worker') continue;
          // the guard does not stop a spelling the handler answers
          const authorized = await call(method, path, authorizationFor(expected), body);
          if ([401, 403].includes(authorized.status)) leaks.push(`${method} ${path}: ${authorized.status} with credentials`);
        }
      }
    }
    t.diagnostic(`${leaks.length} leaks over ${tried} spellings`);
    assert.deepEqual(leaks, []);
  });

  test('protected routes answer with the page credentials or the API token, token routes only with the token, open routes to anyone', async () => {
    for (const { method, key, expected, template, query, body } of walk()) {
      const path = `${spellings(template)[0] ?? ''}${query}`;
      const anonymous = await call(method, path, null, body);
      const withPages = await call(method, path, basic(credentials.username, credentials.password), body);
      const withToken = await call(method, path, `Bearer ${apiToken}`, body);
      const wrongPassword = await call(method, path, basic(credentials.username, 'wrong'), body);
      const wrongToken = await call(method, path, `Bearer ${apiToken}x`, body);
      switch (expected) {
        case 'open':
          assert.notEqual(anonymous.code, 'UNAUTHORIZED', key);
          assert.doesNotMatch(anonymous.challenge ?? '', /^Basic/, key);
          assert.equal(withPages.status, anonymous.status, `${key}: credentials change nothing`);
          if (method !== 'POST') assert.equal(anonymous.status, 200, key);
          break;
        case 'protected':
          assert.equal(anonymous.status, 401, key);
          assert.equal(wrongPassword.status, 401, key);
          assert.equal(wrongToken.status, 401, key);
          assert.equal(withPages.status, 200, key);
          assert.equal(withToken.status, 200, `${key} with the API token`);
          break;
        case 'token':
          assert.equal(anonymous.status, 401, key);
          assert.equal(wrongToken.status, 401, key);
          assert.equal(withPages.status, 401, `${key}: page credentials do not allow writes`);
          assert.ok(![401, 403].includes(withToken.status), `${key} with the token: ${withToken.status}`);
          break;
        case 'worker':
          // neither the API token nor the page credentials are a worker's token
          for (const answer of [anonymous, withPages, withToken, wrongToken]) assert.ok([401, 403].includes(answer.status), `${key}: ${answer.status}`);
          break;
        case null:
          assert.fail(`${key} declares no access`);
      }
    }
  });
});

describe('route guards at app construction', () => {
  const guards = createRouteGuards({ pageAuth: createPageAuth({ credentials }), token: apiToken });
  const appWith = (register: (router: Router) => void) => {
    const app = new Koa();
    const router = new Router();
    register(router);
    app.use(router.routes());
    return app;
  };

  test('accepts an app whose every route starts with one of its guards', () => {
    assertRoutesGuarded(
      appWith((router) =>
        router
          .get('/a', guards.open, () => {})
          .get('/b', guards.protected, () => {})
          .post('/c', guards.token, () => {}),
      ),
      guards,
    );
  });

  test('refuses a route that declares no access, naming it', () => {
    assert.throws(
      () =>
        assertRoutesGuarded(
          appWith((router) => router.get('/a', guards.open, () => {}).get('/forgotten', () => {})),
          guards,
        ),
      (err: Error & { code?: string }) => err.code === 'INTERNAL' && /GET\S* \/forgotten/.test(err.message) && !/ \/a\b/.test(err.message),
    );
  });

  test('refuses a router middleware and a guard made for another app', () => {
    const other = createRouteGuards({ pageAuth: createPageAuth({}), token: undefined });
    assert.throws(
      () =>
        assertRoutesGuarded(
          appWith((router) => router.get('/a', other.protected, () => {})),
          guards,
        ),
      /\/a/,
    );
    assert.throws(
      () =>
        assertRoutesGuarded(
          appWith((router) => router.use(async (_ctx, next) => next()).get('/a', guards.open, () => {})),
          guards,
        ),
      /USE/,
    );
  });
});
