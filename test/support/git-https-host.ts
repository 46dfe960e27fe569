import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** One request the git host answered. */
export interface GitHostRequest {
  /** `owner/name` of the repository asked for, or null when the path names none */
  repository: string | null;
  /** the token of `Authorization: Basic x-access-token:<token>`, or null without one */
  token: string | null;
  /** what was answered: 401 when `authorize` refused, else git http-backend's status */
  status: number;
}

/**
 * A private git host over HTTPS for tests: git's smart HTTP protocol served by `git
 * http-backend` (https://git-scm.com/docs/git-http-backend) from the bare repositories under
 * `root` (`<root>/<owner>/<name>.git`), answering only requests whose `x-access-token` basic
 * credential `authorize` accepts, as GitHub does for a private repository (401 with a
 * `WWW-Authenticate` challenge otherwise). TLS uses a throwaway self-signed certificate for
 * 127.0.0.1; `gitHome` is a HOME whose .gitconfig trusts it (set it as HOME for git).
 */
export interface GitHttpsHost {
  /** `127.0.0.1:<port>`: the host a clone URL names */
  host: string;
  /** a directory with a .gitconfig that trusts this host's certificate */
  gitHome: string;
  requests: GitHostRequest[];
  close(): Promise<void>;
}

/** Starts a {@link GitHttpsHost}; `authorize` decides per repository and token. */
export async function startGitHttpsHost(options: { root: string; authorize: (repository: string, token: string | null) => boolean }): Promise<GitHttpsHost> {
  const dir = await mkdtemp(join(tmpdir(), 'autobuilder-git-host-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  await writeFile(join(dir, '.gitconfig'), `[http]\n\tsslCAInfo = ${join(dir, 'cert.pem')}\n`);
  const requests: GitHostRequest[] = [];
  const server: Server = createServer({ key: await readFile(join(dir, 'key.pem')), cert: await readFile(join(dir, 'cert.pem')) }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://git.invalid');
    const match = /^\/([A-Za-z0-9_.-]+)\/([A-Za-z0-9_.-]+?)(?:\.git)?(\/.*)$/.exec(url.pathname);
    const repository = match === null ? null : `${match[1]}/${match[2]}`;
    const basic = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const [user, token] = basic === undefined ? [] : Buffer.from(basic, 'base64').toString('utf8').split(':');
    const presented = user === 'x-access-token' && token !== undefined ? token : null;
    if (match === null || repository === null || !options.authorize(repository, presented)) {
      requests.push({ repository, token: presented, status: 401 });
      res.writeHead(401, { 'www-authenticate': 'Basic realm="GitHub"' }).end();
      return;
    }
    // git http-backend is a CGI program: the request in its environment and stdin, the answer (CGI headers, then body) on stdout
    const cgi = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        GIT_PROJECT_ROOT: options.root,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: `/${match[1]}/${match[2]}.git${match[3]}`,
        REQUEST_METHOD: req.method ?? 'GET',
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        REMOTE_USER: 'x-access-token',
        REMOTE_ADDR: '127.0.0.1',
        ...(req.headers['git-protocol'] === undefined ? {} : { GIT_PROTOCOL: String(req.headers['git-protocol']) }),
        ...(req.headers['content-encoding'] === undefined ? {} : { HTTP_CONTENT_ENCODING: String(req.headers['content-encoding']) }),
      },
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      headersDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        if (name === 'status') status = Number.parseInt(value, 10);
        else headers[name] = value;
      }
      requests.push({ repository, token: presented, status });
      res.writeHead(status, headers);
      res.write(head.subarray(end + 4));
    });
    cgi.on('close', () => {
      if (!headersDone) res.writeHead(500).end();
      else res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    gitHome: dir,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
