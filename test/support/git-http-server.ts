import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash, timingSafeEqual } from "node:crypto";
import { access, constants as fsConstants } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { promisify } from "node:util";

export interface GitHttpServerOptions {
  /** Directory holding the bare repositories; `<url>/<name>` serves `<projectRoot>/<name>`. */
  projectRoot: string;
  /**
   * When set, every request needs this token, else it gets 401: as the password of HTTP Basic auth, or as
   * `Authorization: Bearer <token>` (how Bitbucket and Azure DevOps take access tokens).
   */
  token?: string;
  /**
   * When set (and `token` is set), the Basic auth user name must be this too. When not set any user name is
   * accepted, as GitHub does for tokens; "x-access-token" is then only what `authorizationHeader()` and
   * `authRepoUrl()` put in.
   */
  username?: string;
  /** More tokens to take, decided per request (e.g. the installation tokens a GitHub simulator issued). */
  acceptsToken?: (token: string) => boolean;
}

export interface GitHttpRequestRecord {
  method: string;
  /** Path and query, e.g. "/gitops.git/info/refs?service=git-receive-pack". */
  path: string;
  authorized: boolean;
  /** HTTP status sent back; 0 until the response head is written. */
  status: number;
  /** performance.now() when the request arrived (for benchmarks). */
  receivedAt: number;
  /**
   * performance.now() when the whole response had been handed to the operating system; absent while it is still
   * being written, and for a response that was cut off.
   */
  finishedAt?: number;
}

const DEFAULT_USERNAME = "x-access-token";

/**
 * A git host for tests: a node:http server running the real CGI `git http-backend` (smart HTTP) for each request,
 * so clone, fetch and push go through the same protocol as against GitHub or GitLab.
 */
export class GitHttpServer {
  readonly url: string;
  /** User name to authenticate with: the `username` option or "x-access-token". */
  readonly username: string;
  readonly requests: GitHttpRequestRecord[] = [];
  hits = 0;
  /**
   * Runs once, before the next push (`POST .../git-receive-pack`) reaches git, then clears itself. Tests use it to
   * let another writer move the branch between a client's fetch and its push: a real push race.
   */
  beforeNextPush: (() => Promise<void>) | undefined;
  /**
   * Runs once, before the next request of any kind reaches git, then clears itself. Tests use it to hold a client
   * at its first git request (for example to kill it there).
   */
  beforeNextRequest: (() => Promise<void>) | undefined;

  private readonly projectRoot: string;
  private readonly cgis = new Set<ChildProcess>();

  private constructor(
    private readonly server: Server,
    private readonly backend: string,
    private readonly options: GitHttpServerOptions,
  ) {
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    this.username = options.username ?? DEFAULT_USERNAME;
    this.projectRoot = resolve(options.projectRoot);
  }

  static async start(options: GitHttpServerOptions): Promise<GitHttpServer> {
    const backend = await httpBackendPath();
    const server = createServer();
    await new Promise<void>((ready, fail) => {
      server.once("error", fail);
      server.listen(0, "127.0.0.1", () => ready());
    });
    const gitServer = new GitHttpServer(server, backend, options);
    server.on("request", (req, res) => gitServer.handle(req, res));
    return gitServer;
  }

  /**
   * Holds the next request (`request`), or the next push (`push`), before it reaches git: `reached` resolves when it
   * arrives, and it goes on to git once `release` is called. Tests kill a client while it is held.
   */
  hold(what: "request" | "push"): { reached: Promise<void>; release(): void } {
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    let arrived: () => void = () => undefined;
    const reached = new Promise<void>((resolve) => (arrived = resolve));
    const hook = async () => {
      arrived();
      await released;
    };
    if (what === "request") this.beforeNextRequest = hook;
    else this.beforeNextPush = hook;
    return { reached, release };
  }

  /** `${url}/${name}`, e.g. "http://127.0.0.1:40123/gitops.git". */
  repoUrl(name: string): string {
    return `${this.url}/${name}`;
  }

  /** The repo URL with the user name and token in it, as many tools take credentials. */
  authRepoUrl(name: string): string {
    const url = new URL(this.repoUrl(name));
    url.username = this.username;
    url.password = this.options.token ?? "";
    return url.toString();
  }

  /** "Basic <base64>" for the configured credentials, e.g. for `git -c http.extraHeader=Authorization: ...`. */
  authorizationHeader(): string {
    return basicAuth(this.username, this.options.token ?? "");
  }

  /** Closes the listener and every open connection, and kills CGI processes still running. */
  async stop(): Promise<void> {
    for (const cgi of this.cgis) cgi.kill("SIGKILL");
    if (!this.server.listening) return;
    await new Promise<void>((done) => {
      this.server.close(() => done());
      this.server.closeAllConnections();
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.hits++;
    const url = new URL(req.url ?? "/", this.url);
    const credentials = parseAuthorization(req.headers.authorization);
    const authorized = this.isAuthorized(credentials);
    const record: GitHttpRequestRecord = {
      method: req.method ?? "GET",
      path: url.pathname + url.search,
      authorized,
      status: 0,
      receivedAt: performance.now(),
    };
    this.requests.push(record);
    res.once("finish", () => (record.finishedAt = performance.now()));
    const respond = (status: number, headers: Record<string, string>, body: string) => {
      record.status = status;
      req.resume(); // discard a request body we will not read
      res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", ...headers }).end(body);
    };

    if (!authorized) {
      respond(401, { "WWW-Authenticate": 'Basic realm="git"' }, "authentication required\n");
      return;
    }
    let pathInfo: string;
    try {
      pathInfo = decodeURIComponent(url.pathname);
    } catch {
      respond(400, {}, "malformed path\n");
      return;
    }
    const push = req.method === "POST" && pathInfo.endsWith("/git-receive-pack");
    const hook = this.beforeNextRequest ?? (push ? this.beforeNextPush : undefined);
    if (!hook) {
      this.runBackend(req, res, record, pathInfo, url.search.slice(1), credentials?.user);
      return;
    }
    if (this.beforeNextRequest) this.beforeNextRequest = undefined;
    else this.beforeNextPush = undefined;
    hook().then(
      () => this.runBackend(req, res, record, pathInfo, url.search.slice(1), credentials?.user),
      (error: unknown) => respond(500, {}, `the test hook failed: ${String(error)}\n`),
    );
  }

  private isAuthorized(credentials: BasicCredentials | undefined): boolean {
    const token = this.options.token;
    if (token === undefined) return true;
    if (credentials === undefined) return false;
    const passwordOk =
      constantTimeEqual(credentials.password, token) ||
      (this.options.acceptsToken?.(credentials.password) ?? false);
    const expectedUser = this.options.username;
    const userOk =
      expectedUser === undefined ||
      (credentials.user !== undefined && constantTimeEqual(credentials.user, expectedUser));
    return passwordOk && userOk;
  }

  /** Runs `git http-backend` as CGI/1.1: request body on stdin, "Status:" + headers + body on stdout. */
  private runBackend(
    req: IncomingMessage,
    res: ServerResponse,
    record: GitHttpRequestRecord,
    pathInfo: string,
    query: string,
    remoteUser: string | undefined,
  ): void {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      GIT_PROJECT_ROOT: this.projectRoot,
      GIT_HTTP_EXPORT_ALL: "1",
      // Hermetic: no system or user config, and push allowed (http-backend refuses receive-pack by default).
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_CONFIG_COUNT: "1",
      GIT_CONFIG_KEY_0: "http.receivepack",
      GIT_CONFIG_VALUE_0: "true",
      GATEWAY_INTERFACE: "CGI/1.1",
      SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
      REQUEST_METHOD: req.method ?? "GET",
      PATH_INFO: pathInfo,
      QUERY_STRING: query,
      REMOTE_ADDR: req.socket.remoteAddress ?? "127.0.0.1",
    };
    const headerEnv: Array<[string, string | undefined]> = [
      ["CONTENT_TYPE", req.headers["content-type"]],
      ["CONTENT_LENGTH", req.headers["content-length"]],
      ["HTTP_CONTENT_ENCODING", req.headers["content-encoding"]], // git gzips large request bodies
      ["HTTP_GIT_PROTOCOL", headerValue(req.headers["git-protocol"])], // lets the backend speak protocol v2
      ["REMOTE_USER", remoteUser],
    ];
    for (const [name, value] of headerEnv) if (value !== undefined) env[name] = value;

    const cgi = spawn(this.backend, [], { env, stdio: ["pipe", "pipe", "pipe"] });
    this.cgis.add(cgi);
    let stderr = "";
    let head: Buffer = Buffer.alloc(0);
    let headersSent = false;

    const fail = (message: string) => {
      if (headersSent) {
        res.destroy();
        return;
      }
      headersSent = true;
      record.status = 502;
      res.writeHead(502, { "Content-Type": "text/plain; charset=utf-8" }).end(`${message}\n${stderr}`);
    };

    cgi.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    cgi.stdin.on("error", () => undefined); // EPIPE when the backend answers without reading the body
    req.pipe(cgi.stdin);
    res.on("close", () => {
      if (!res.writableFinished) cgi.kill("SIGKILL"); // the client went away mid-response
    });

    cgi.stdout.on("data", (chunk: Buffer) => {
      let body = chunk;
      if (!headersSent) {
        head = Buffer.concat([head, chunk]);
        const split = findHeaderEnd(head);
        if (split === undefined) return;
        const cgiHeaders = parseCgiHeaders(head.subarray(0, split.index).toString("latin1"));
        body = head.subarray(split.index + split.length);
        headersSent = true;
        record.status = cgiHeaders.status;
        res.writeHead(cgiHeaders.status, cgiHeaders.statusText, cgiHeaders.headers);
      }
      if (body.length > 0 && !res.write(body)) {
        cgi.stdout.pause();
        res.once("drain", () => cgi.stdout.resume());
      }
    });
    cgi.stdout.on("end", () => {
      if (headersSent) res.end();
    });
    cgi.once("error", (error) => {
      this.cgis.delete(cgi);
      fail(`could not run ${this.backend}: ${error.message}`);
    });
    cgi.once("close", (code, signal) => {
      this.cgis.delete(cgi);
      if (!headersSent) fail(`git http-backend ended (${signal ?? `code ${code}`}) before sending headers`);
    });
  }
}

interface BasicCredentials {
  /** Undefined for a bearer token. */
  user: string | undefined;
  password: string;
}

function parseAuthorization(header: string | undefined): BasicCredentials | undefined {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  if (bearer?.[1] !== undefined) return { user: undefined, password: bearer[1] };
  const match = /^Basic\s+(\S+)\s*$/i.exec(header ?? "");
  if (match?.[1] === undefined) return undefined;
  const decoded = Buffer.from(match[1], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export function basicAuth(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`, "utf8").toString("base64")}`;
}

/** Compares digests, so neither the content nor the length of the secret leaks through timing. */
function constantTimeEqual(actual: string, expected: string): boolean {
  const digest = (value: string) => createHash("sha256").update(value, "utf8").digest();
  return timingSafeEqual(digest(actual), digest(expected));
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(", ") : value;
}

function findHeaderEnd(buffer: Buffer): { index: number; length: number } | undefined {
  const crlf = buffer.indexOf("\r\n\r\n");
  const lf = buffer.indexOf("\n\n");
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return { index: crlf, length: 4 };
  if (lf >= 0) return { index: lf, length: 2 };
  return undefined;
}

function parseCgiHeaders(block: string): {
  status: number;
  statusText: string | undefined;
  headers: Record<string, string | string[]>;
} {
  let status = 200;
  let statusText: string | undefined;
  const headers: Record<string, string | string[]> = {};
  for (const line of block.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === "status") {
      const match = /^(\d{3})\s*(.*)$/.exec(value);
      status = Number(match?.[1] ?? 500);
      statusText = match?.[2] || undefined;
      continue;
    }
    const previous = headers[name];
    headers[name] = previous === undefined ? value : [previous, value].flat();
  }
  return { status, statusText, headers };
}

/** /usr/lib/git-core/git-http-backend, else `$(git --exec-path)/git-http-backend`. */
async function httpBackendPath(): Promise<string> {
  const usual = "/usr/lib/git-core/git-http-backend";
  try {
    await access(usual, fsConstants.X_OK);
    return usual;
  } catch {
    const { stdout } = await promisify(execFile)("git", ["--exec-path"]);
    return join(stdout.trim(), "git-http-backend");
  }
}
