import { createPublicKey, randomBytes, randomUUID, verify } from "node:crypto";
import type { KeyObject } from "node:crypto";
import type { Server } from "node:http";
import express from "express";
import type { NextFunction, Request, Response } from "express";
import { close, listen } from "../../../src/http/http-server.js";
import { BareRepo, RefMovedError, TaskQueue } from "../../support/bare-repo.js";
import type { GitIdentity } from "../../support/bare-repo.js";

// A stand-in for the GitHub REST API (pulls and the repository), over real HTTP, for repositories backed by real
// bare git repos. Merges are made in the bare repo with git plumbing, so a GitOps tool reading the repo sees the
// merge commit. Shapes: the REST reference (OpenAPI description, as shipped in @octokit/openapi-types). See
// readme.md next to this file.

export interface SimulatedRepository {
  owner: string;
  repo: string;
  /** filesystem path of the bare repo */
  gitDir: string;
  /** default "main" */
  defaultBranch?: string;
  /** what `clone_url` reports (e.g. the GitHttpServer URL the service pushes to) */
  cloneUrl?: string;
}

export interface GitHubSimulatorOptions {
  /** the accepted token (`Authorization: token <t>` or `Authorization: Bearer <t>`) */
  token: string;
  repositories: SimulatedRepository[];
  /** login of the token's user, who opens the pull requests (default "keptn-bot") */
  login?: string;
  /** default 127.0.0.1 */
  host?: string;
  /** default 0 = a free port */
  port?: number;
  /** GitHub Apps that may exchange a JWT for installation tokens (`POST /app/installations/{id}/access_tokens`) */
  apps?: SimulatedApp[];
  /** lifetime of an installation token in seconds (default 3600, as on GitHub) */
  installationTokenLifetimeSeconds?: number;
  /** the clock for JWT checks and token expiry, in ms since the epoch (default `Date.now`) */
  now?: () => number;
}

export interface SimulatedApp {
  /** the app ID (`iss` as a number or a numeric string) */
  id: number;
  /** the client ID (`Iv1.…`), also accepted as `iss` */
  clientId?: string;
  /** the app's public key (PEM or KeyObject): JWTs must be signed with its private key */
  publicKey: string | KeyObject;
  /** the installations of this app that tokens may be made for */
  installationIds: number[];
}

export interface IssuedInstallationToken {
  appId: number;
  installationId: number;
  token: string;
  /** ms since the epoch, on the simulator's clock, whole seconds as in `expires_at` */
  expiresAt: number;
}

export type MergeMethod = "merge" | "squash" | "rebase";

export interface RecordedRequest {
  method: string;
  /** path without the `/api/v3` prefix of GitHub Enterprise, e.g. "/repos/o/r/pulls" */
  path: string;
  query: Record<string, string>;
  body?: unknown;
}

export interface RateLimitAnswer {
  /** 403 (default) or 429: GitHub sends either */
  status?: 403 | 429;
  /** the `retry-after` header in seconds (default 60); null leaves the header out */
  retryAfterSeconds?: number | null;
  /** the primary limit instead: `x-ratelimit-remaining: 0` and `x-ratelimit-reset`, no `retry-after` */
  primary?: boolean;
}

const DOCS = "https://docs.github.com/rest";
const ACCESS_TOKENS_DOCS = `${DOCS}/apps/apps#create-an-installation-access-token-for-an-app`;
/** GitHub refuses a JWT whose `exp` is more than 10 minutes ahead ("Generating a JSON Web Token (JWT) for a GitHub App"). */
const JWT_MAX_AHEAD_S = 10 * 60;
const PULLS_DOCS = {
  list: `${DOCS}/pulls/pulls#list-pull-requests`,
  create: `${DOCS}/pulls/pulls#create-a-pull-request`,
  get: `${DOCS}/pulls/pulls#get-a-pull-request`,
  update: `${DOCS}/pulls/pulls#update-a-pull-request`,
  merge: `${DOCS}/pulls/pulls#merge-a-pull-request`,
  repo: `${DOCS}/repos/repos#get-a-repository`,
} as const;
const SECONDARY_LIMIT_DOCS =
  "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits";
const PRIMARY_LIMIT_DOCS =
  "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits";
const RATE_LIMIT = 5000;
const GITHUB_COMMITTER: GitIdentity = { name: "GitHub", email: "noreply@github.com" };

interface ValidationErrorItem {
  resource: string;
  code: string;
  field?: string;
  message?: string;
}

/** An answer in GitHub's error shape: `{message, documentation_url, status}` (+ `errors` for 422). */
class GitHubApiError extends Error {
  override readonly name = "GitHubApiError";
  constructor(
    readonly status: number,
    message: string,
    readonly documentationUrl: string,
    readonly errors?: ValidationErrorItem[],
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const notFound = (docs: string) => new GitHubApiError(404, "Not Found", docs);
const validationFailed = (docs: string, ...errors: ValidationErrorItem[]) =>
  new GitHubApiError(422, "Validation Failed", docs, errors);
const notMergeable = (message = "Pull Request is not mergeable") =>
  new GitHubApiError(405, message, PULLS_DOCS.merge);

interface UserRecord {
  login: string;
  id: number;
}

interface PullRecord {
  number: number;
  id: number;
  title: string;
  body: string | null;
  state: "open" | "closed";
  draft: boolean;
  headRef: string;
  baseRef: string;
  /** last known heads; refreshed from git while the pull request is open */
  headSha: string;
  baseSha: string;
  user: UserRecord;
  createdAt: string;
  updatedAt: string;
  closedAt: string | null;
  mergedAt: string | null;
  mergedBy: UserRecord | null;
  merged: boolean;
  /** the test merge commit before the merge, the merge (or squash) commit after it */
  mergeCommitSha: string | null;
  /** mergeability computed for (headSha, baseSha); absent until the "background job" ran */
  mergeability?: { head: string; base: string; mergeable: boolean };
  /** set by blockMerge(): merges answer 405 with this message, mergeable_state "blocked" */
  blockedReason?: string;
}

interface RepositoryRecord {
  config: Required<Omit<SimulatedRepository, "cloneUrl">> & { cloneUrl?: string };
  id: number;
  git: BareRepo;
  queue: TaskQueue;
  pulls: PullRecord[];
}

type Injected =
  | { kind: "failure"; status: number }
  | { kind: "rate-limit"; status: 403 | 429; retryAfterSeconds: number | null; primary: boolean };

export class GitHubSimulator {
  /** every HTTP request received, in order */
  readonly requests: RecordedRequest[] = [];
  /** internal failures that were not an API answer; tests assert it stays empty */
  readonly errors: Error[] = [];
  /** every installation token issued, in order */
  readonly issuedTokens: IssuedInstallationToken[] = [];

  private readonly token: string;
  private readonly user: UserRecord;
  private readonly host: string;
  private readonly port: number;
  private readonly repositories = new Map<string, RepositoryRecord>();
  private readonly users = new Map<string, UserRecord>();
  private readonly injected: Injected[] = [];
  private readonly apps: (SimulatedApp & { key: KeyObject })[];
  private readonly tokenLifetimeS: number;
  private readonly now: () => number;
  private server?: Server;
  private baseUrl?: string;
  private nextId = 1_000_001;
  private used = 0;

  constructor(options: GitHubSimulatorOptions) {
    if (options.token.length === 0) throw new Error("GitHubSimulator: options.token must not be empty");
    this.token = options.token;
    this.user = this.userNamed(options.login ?? "keptn-bot");
    this.host = options.host ?? "127.0.0.1";
    this.port = options.port ?? 0;
    this.apps = (options.apps ?? []).map((app) => ({
      ...app,
      key:
        typeof app.publicKey !== "string" && app.publicKey.type === "public"
          ? app.publicKey
          : createPublicKey(app.publicKey),
    }));
    this.tokenLifetimeS = options.installationTokenLifetimeSeconds ?? 3600;
    this.now = options.now ?? Date.now;
    for (const repository of options.repositories) this.addRepository(repository);
  }

  /** Base URL for octokit (`baseUrl`); `${url}/api/v3` answers the same, as GitHub Enterprise does. */
  get url(): string {
    if (this.baseUrl === undefined) throw new Error("GitHubSimulator: call start() before reading url");
    return this.baseUrl;
  }

  async start(): Promise<string> {
    if (this.server) throw new Error("GitHubSimulator: start() called twice");
    const { server, url } = await listen(this.buildHttpApp(), this.host, this.port);
    this.server = server;
    this.baseUrl = url;
    return url;
  }

  /** Closes the server and waits for git work under way. */
  async stop(): Promise<void> {
    if (this.server?.listening) await close(this.server);
    await Promise.all([...this.repositories.values()].map((record) => record.queue.idle()));
  }

  addRepository(repository: SimulatedRepository): void {
    const fullName = `${repository.owner}/${repository.repo}`;
    if (this.repositories.has(fullName.toLowerCase())) {
      throw new Error(`GitHubSimulator: repository ${fullName} already exists`);
    }
    this.userNamed(repository.owner);
    this.repositories.set(fullName.toLowerCase(), {
      config: { defaultBranch: "main", ...repository },
      id: this.nextId++,
      git: new BareRepo(repository.gitDir),
      queue: new TaskQueue(),
      pulls: [],
    });
  }

  // ---- test hooks ----

  /** The next `count` API calls answer `status` (default 502) in GitHub's error shape and are not processed. */
  injectFailures(count: number, status = 502): void {
    for (let i = 0; i < count; i++) this.injected.push({ kind: "failure", status });
  }

  /** The next API call answers GitHub's secondary rate limit (or the primary one) and is not processed. */
  rateLimitNext(answer: RateLimitAnswer = {}): void {
    this.injected.push({
      kind: "rate-limit",
      status: answer.status ?? 403,
      retryAfterSeconds: answer.retryAfterSeconds === undefined ? 60 : answer.retryAfterSeconds,
      primary: answer.primary ?? false,
    });
  }

  /**
   * A reviewer merges the pull request (as with the Merge button): a real merge (or squash) commit on the base
   * branch of the bare repo. Resolves with its SHA; rejects like the API would (not mergeable, conflict...).
   */
  mergeAsReviewer(
    fullName: string,
    number: number,
    options: { method?: "merge" | "squash"; reviewer?: string } = {},
  ): Promise<string> {
    const repository = this.repositoryOf(fullName);
    const pull = this.pullOf(repository, number);
    const by = this.userNamed(options.reviewer ?? "reviewer");
    return repository.queue.run(() =>
      this.merge(repository, pull, { method: options.method ?? "merge", by }),
    );
  }

  /** A reviewer closes the pull request without merging it. */
  closeAsReviewer(fullName: string, number: number): Promise<void> {
    const repository = this.repositoryOf(fullName);
    const pull = this.pullOf(repository, number);
    return repository.queue.run(async () => {
      if (pull.state === "closed") return;
      await this.refresh(repository, pull);
      pull.state = "closed";
      pull.closedAt = pull.updatedAt = timestamp();
    });
  }

  /**
   * Stands in for what GitHub evaluates outside the diff (branch protection, required checks, reviews): while
   * set, merges answer 405 with `reason` and `mergeable_state` is "blocked". `undefined` lifts it.
   */
  blockMerge(fullName: string, number: number, reason: string | undefined): void {
    this.pullOf(this.repositoryOf(fullName), number).blockedReason = reason;
  }

  // ---- merging ----

  private async merge(
    repository: RepositoryRecord,
    pull: PullRecord,
    request: {
      method: MergeMethod;
      by: UserRecord;
      sha?: string;
      commitTitle?: string;
      commitMessage?: string;
    },
  ): Promise<string> {
    if (pull.state !== "open") throw notMergeable();
    if (pull.draft) throw notMergeable("Pull Request is still a draft");
    if (request.method === "rebase") throw notMergeable("Rebase merges are not allowed on this repository.");
    const { git } = repository;
    const [head, base] = await Promise.all([git.branchHead(pull.headRef), git.branchHead(pull.baseRef)]);
    if (head === undefined || base === undefined) throw notMergeable();
    if (request.sha !== undefined && request.sha !== head) {
      throw new GitHubApiError(
        409,
        "Head branch was modified. Review and try the merge again.",
        PULLS_DOCS.merge,
      );
    }
    if (pull.blockedReason !== undefined) throw notMergeable(pull.blockedReason);
    const merged = await git.mergeTree(base, head);
    if (!merged.clean) throw notMergeable();

    const { owner } = repository.config;
    let title: string;
    let message: string;
    let parents: string[];
    if (request.method === "squash") {
      title = request.commitTitle ?? `${pull.title} (#${pull.number})`;
      const commits = await git.commitsBetween(await git.mergeBase(base, head), head);
      message = request.commitMessage ?? commits.map((commit) => `* ${commit.subject}`).join("\n\n");
      parents = [base];
    } else {
      title = request.commitTitle ?? `Merge pull request #${pull.number} from ${owner}/${pull.headRef}`;
      message = request.commitMessage ?? pull.title;
      parents = [base, head];
    }
    const author = { name: request.by.login, email: noreplyEmail(request.by) };
    const commit = await git.commitTree(merged.tree, parents, message ? `${title}\n\n${message}` : title, {
      author,
      committer: GITHUB_COMMITTER,
    });
    try {
      await git.moveBranch(pull.baseRef, commit, base, `merge pull request #${pull.number}`);
    } catch (error) {
      if (error instanceof RefMovedError) {
        throw notMergeable("Base branch was modified. Review and try the merge again.");
      }
      throw error;
    }
    const now = timestamp();
    Object.assign(pull, {
      state: "closed",
      merged: true,
      mergedAt: now,
      closedAt: now,
      updatedAt: now,
      mergedBy: request.by,
      mergeCommitSha: commit,
      headSha: head,
      baseSha: commit,
    } satisfies Partial<PullRecord>);
    return commit;
  }

  /** Reads the branch heads of an open pull request from git. */
  private async refresh(repository: RepositoryRecord, pull: PullRecord): Promise<void> {
    if (pull.state !== "open") return;
    const [head, base] = await Promise.all([
      repository.git.branchHead(pull.headRef),
      repository.git.branchHead(pull.baseRef),
    ]);
    if (head !== undefined) pull.headSha = head;
    if (base !== undefined) pull.baseSha = base;
  }

  /**
   * GET of a single pull request: the first read after the head or base moved answers `mergeable: null` ("a
   * background job to compute the mergeability" has started); the next read has the result, with the SHA of a
   * real test merge commit in `merge_commit_sha`.
   */
  private async checkMergeability(repository: RepositoryRecord, pull: PullRecord): Promise<void> {
    const known = pull.mergeability;
    if (pull.state !== "open" || (known?.head === pull.headSha && known.base === pull.baseSha)) return;
    const merged = await repository.git.mergeTree(pull.baseSha, pull.headSha);
    pull.mergeability = { head: pull.headSha, base: pull.baseSha, mergeable: merged.clean };
    pull.mergeCommitSha = merged.clean
      ? await repository.git.commitTree(
          merged.tree,
          [pull.baseSha, pull.headSha],
          `Merge ${pull.headSha} into ${pull.baseSha}`,
          {
            author: GITHUB_COMMITTER,
            committer: GITHUB_COMMITTER,
          },
        )
      : null;
  }

  // ---- JSON ----

  private userJson(user: UserRecord) {
    return {
      login: user.login,
      id: user.id,
      node_id: nodeId("U", user.id),
      avatar_url: `https://avatars.githubusercontent.com/u/${user.id}?v=4`,
      gravatar_id: "",
      url: `${this.url}/users/${user.login}`,
      html_url: `${this.url}/${user.login}`,
      type: "User",
      site_admin: false,
    };
  }

  private repositoryJson(repository: RepositoryRecord) {
    const { owner, repo, defaultBranch, cloneUrl } = repository.config;
    return {
      id: repository.id,
      node_id: nodeId("R", repository.id),
      name: repo,
      full_name: `${owner}/${repo}`,
      private: true,
      owner: this.userJson(this.userNamed(owner)),
      html_url: `${this.url}/${owner}/${repo}`,
      description: null,
      fork: false,
      url: `${this.url}/repos/${owner}/${repo}`,
      clone_url: cloneUrl ?? `${this.url}/${owner}/${repo}.git`,
      default_branch: defaultBranch,
      visibility: "private",
      permissions: { admin: false, maintain: false, push: true, triage: true, pull: true },
    };
  }

  private async pullJson(repository: RepositoryRecord, pull: PullRecord, withMergeability: boolean) {
    const { owner, repo } = repository.config;
    const api = `${this.url}/repos/${owner}/${repo}`;
    const html = `${this.url}/${owner}/${repo}/pull/${pull.number}`;
    const open = pull.state === "open";
    const known =
      pull.mergeability?.head === pull.headSha && pull.mergeability.base === pull.baseSha
        ? pull.mergeability
        : undefined;
    const mergeable = open && known ? known.mergeable : null;
    const mergeableState = !open
      ? "unknown"
      : known === undefined
        ? "unknown"
        : !known.mergeable
          ? "dirty"
          : pull.draft
            ? "draft"
            : pull.blockedReason !== undefined
              ? "blocked"
              : "clean";
    const ownerJson = this.userJson(this.userNamed(owner));
    const repoJson = this.repositoryJson(repository);
    const json = {
      url: `${api}/pulls/${pull.number}`,
      id: pull.id,
      node_id: nodeId("PR", pull.id),
      html_url: html,
      diff_url: `${html}.diff`,
      patch_url: `${html}.patch`,
      issue_url: `${api}/issues/${pull.number}`,
      commits_url: `${api}/pulls/${pull.number}/commits`,
      review_comments_url: `${api}/pulls/${pull.number}/comments`,
      review_comment_url: `${api}/pulls/comments{/number}`,
      comments_url: `${api}/issues/${pull.number}/comments`,
      statuses_url: `${api}/statuses/${pull.headSha}`,
      number: pull.number,
      state: pull.state,
      locked: false,
      title: pull.title,
      user: this.userJson(pull.user),
      body: pull.body,
      labels: [],
      milestone: null,
      active_lock_reason: null,
      created_at: pull.createdAt,
      updated_at: pull.updatedAt,
      closed_at: pull.closedAt,
      merged_at: pull.mergedAt,
      merge_commit_sha: pull.mergeCommitSha,
      assignee: null,
      assignees: [],
      requested_reviewers: [],
      requested_teams: [],
      head: {
        label: `${owner}:${pull.headRef}`,
        ref: pull.headRef,
        sha: pull.headSha,
        user: ownerJson,
        repo: repoJson,
      },
      base: {
        label: `${owner}:${pull.baseRef}`,
        ref: pull.baseRef,
        sha: pull.baseSha,
        user: ownerJson,
        repo: repoJson,
      },
      _links: {
        self: { href: `${api}/pulls/${pull.number}` },
        html: { href: html },
        issue: { href: `${api}/issues/${pull.number}` },
        statuses: { href: `${api}/statuses/${pull.headSha}` },
      },
      author_association: "MEMBER",
      auto_merge: null,
      draft: pull.draft,
    };
    if (!withMergeability) return json; // pull-request-simple (list) has no merge fields
    const commits = await repository.git.commitsBetween(pull.baseSha, pull.headSha).catch(() => []);
    const stat = await repository.git
      .diffStat(await repository.git.mergeBase(pull.baseSha, pull.headSha), pull.headSha)
      .catch(() => ({ additions: 0, deletions: 0, files: 0 }));
    return {
      ...json,
      merged: pull.merged,
      mergeable,
      rebaseable: mergeable,
      mergeable_state: mergeableState,
      merged_by: pull.mergedBy ? this.userJson(pull.mergedBy) : null,
      comments: 0,
      review_comments: 0,
      maintainer_can_modify: false,
      commits: commits.length,
      additions: stat.additions,
      deletions: stat.deletions,
      changed_files: stat.files,
    };
  }

  // ---- HTTP ----

  private buildHttpApp(): express.Express {
    const app = express();
    app.disable("x-powered-by");
    app.disable("etag");
    app.use((req, res, next) => {
      const url = new URL(req.originalUrl, "http://simulator.invalid");
      const query: Record<string, string> = {};
      for (const [key, value] of url.searchParams) query[key] ??= value;
      const recorded: RecordedRequest = {
        method: req.method,
        path: url.pathname.replace(/^\/api\/v3(?=\/)/, ""),
        query,
      };
      this.requests.push(recorded);
      res.locals["recorded"] = recorded;
      res.setHeader("x-github-request-id", randomUUID().toUpperCase());
      next();
    });
    app.use(express.json({ type: () => true, limit: "5mb" }));
    app.use((req, res, next) => {
      if (req.body !== undefined) (res.locals["recorded"] as RecordedRequest).body = req.body;
      next();
    });
    app.use((req, res, next) => {
      const injected = this.injected.shift();
      if (injected !== undefined) {
        this.answerInjected(res, injected);
        return;
      }
      const header = req.get("authorization");
      if (header === undefined) throw new GitHubApiError(401, "Requires authentication", DOCS);
      const match = /^(token|bearer)\s+(\S+)\s*$/i.exec(header);
      if (/^(?:\/api\/v3)?\/app(?:\/|$)/.test(req.path)) {
        // the /app endpoints take the app's JWT, and only as a bearer token
        res.locals["app"] = this.verifyJwt(match?.[1]?.toLowerCase() === "bearer" ? match[2] : undefined);
      } else if (match?.[2] !== this.token && !this.isLiveInstallationToken(match?.[2])) {
        throw new GitHubApiError(401, "Bad credentials", DOCS);
      }
      this.used++;
      this.setRateLimitHeaders(res, RATE_LIMIT - this.used);
      next();
    });

    const api = express.Router();
    api.post("/app/installations/:id/access_tokens", (req, res) => {
      const app = res.locals["app"] as SimulatedApp;
      const installationId = Number(req.params["id"]);
      if (!app.installationIds.includes(installationId)) throw notFound(ACCESS_TOKENS_DOCS);
      const expiresAt = (Math.floor(this.now() / 1000) + this.tokenLifetimeS) * 1000;
      const token = `ghs_${randomBytes(27).toString("base64url")}`;
      this.issuedTokens.push({ appId: app.id, installationId, token, expiresAt });
      res.status(201).json({
        token,
        expires_at: new Date(expiresAt).toISOString().replace(/\.\d{3}Z$/, "Z"),
        permissions: { contents: "write", metadata: "read", pull_requests: "write" },
        repository_selection: "all",
      });
    });
    api.get("/repos/:owner/:repo", (req, res) => {
      res.status(200).json(this.repositoryJson(this.findRepository(req, PULLS_DOCS.repo)));
    });
    api.get("/repos/:owner/:repo/pulls", async (req, res) => {
      const repository = this.findRepository(req, PULLS_DOCS.list);
      res.status(200).json(await this.listPulls(repository, requestQuery(req), res));
    });
    api.post("/repos/:owner/:repo/pulls", async (req, res) => {
      const repository = this.findRepository(req, PULLS_DOCS.create);
      const pull = await repository.queue.run(() => this.createPull(repository, bodyOf(req)));
      res
        .status(201)
        .setHeader(
          "location",
          `${this.url}/repos/${repository.config.owner}/${repository.config.repo}/pulls/${pull.number}`,
        );
      res.json(await this.pullJson(repository, pull, true));
    });
    api.get("/repos/:owner/:repo/pulls/:number", async (req, res) => {
      const repository = this.findRepository(req, PULLS_DOCS.get);
      const pull = this.findPull(repository, req, PULLS_DOCS.get);
      const json = await repository.queue.run(async () => {
        await this.refresh(repository, pull);
        const answer = await this.pullJson(repository, pull, true);
        await this.checkMergeability(repository, pull); // seen by the next read
        return answer;
      });
      res.status(200).json(json);
    });
    api.patch("/repos/:owner/:repo/pulls/:number", async (req, res) => {
      const repository = this.findRepository(req, PULLS_DOCS.update);
      const pull = this.findPull(repository, req, PULLS_DOCS.update);
      await repository.queue.run(() => this.updatePull(repository, pull, bodyOf(req)));
      res.status(200).json(await this.pullJson(repository, pull, true));
    });
    api.put("/repos/:owner/:repo/pulls/:number/merge", async (req, res) => {
      const repository = this.findRepository(req, PULLS_DOCS.merge);
      const pull = this.findPull(repository, req, PULLS_DOCS.merge);
      const body = bodyOf(req);
      const method = optionalString(body, "merge_method", PULLS_DOCS.merge) ?? "merge";
      if (method !== "merge" && method !== "squash" && method !== "rebase") {
        throw validationFailed(PULLS_DOCS.merge, {
          resource: "PullRequest",
          field: "merge_method",
          code: "invalid",
        });
      }
      const sha = await repository.queue.run(() =>
        this.merge(repository, pull, {
          method,
          by: this.user,
          sha: optionalString(body, "sha", PULLS_DOCS.merge),
          commitTitle: optionalString(body, "commit_title", PULLS_DOCS.merge),
          commitMessage: optionalString(body, "commit_message", PULLS_DOCS.merge),
        }),
      );
      res.status(200).json({ sha, merged: true, message: "Pull Request successfully merged" });
    });
    app.use("/api/v3", api);
    app.use(api);

    app.use((_req, _res) => {
      throw notFound(DOCS);
    });
    app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
      if (error instanceof GitHubApiError) {
        sendError(res, error);
      } else if (isBodyParserError(error)) {
        sendError(res, new GitHubApiError(400, "Problems parsing JSON", DOCS));
      } else {
        this.errors.push(error instanceof Error ? error : new Error(String(error)));
        sendError(res, new GitHubApiError(500, `simulator error: ${String(error)}`, DOCS));
      }
    });
    return app;
  }

  private async listPulls(repository: RepositoryRecord, query: URLSearchParams, res: Response) {
    const state = query.get("state") ?? "open";
    if (!["open", "closed", "all"].includes(state)) {
      throw validationFailed(PULLS_DOCS.list, { resource: "Search", field: "state", code: "invalid" });
    }
    const head = query.get("head");
    // `user:ref-name`; a value without the user part filters nothing (see readme)
    const [headOwner, headRef] = head?.includes(":") ? splitOnce(head, ":") : [undefined, undefined];
    const base = query.get("base");
    const direction =
      query.get("direction") ??
      (["updated", "popularity", "long-running"].includes(query.get("sort") ?? "") ? "asc" : "desc");
    const sortKey = query.get("sort") === "updated" ? "updatedAt" : "createdAt";
    const perPage = Math.min(100, Math.max(1, Number(query.get("per_page") ?? 30) || 30));
    const page = Math.max(1, Number(query.get("page") ?? 1) || 1);
    return repository.queue.run(async () => {
      const matching = repository.pulls.filter(
        (pull) =>
          (state === "all" || pull.state === state) &&
          (headRef === undefined ||
            (headOwner?.toLowerCase() === repository.config.owner.toLowerCase() &&
              pull.headRef === headRef)) &&
          (base === null || pull.baseRef === base),
      );
      matching.sort((a, b) => {
        const order = a[sortKey].localeCompare(b[sortKey]) || a.number - b.number;
        return direction === "asc" ? order : -order;
      });
      const pageItems = matching.slice((page - 1) * perPage, page * perPage);
      const lastPage = Math.max(1, Math.ceil(matching.length / perPage));
      if (lastPage > 1) res.setHeader("link", linkHeader(this.url, repository, query, page, lastPage));
      const items = [];
      for (const pull of pageItems) {
        await this.refresh(repository, pull);
        items.push(await this.pullJson(repository, pull, false));
      }
      return items;
    });
  }

  private async createPull(repository: RepositoryRecord, body: Record<string, unknown>): Promise<PullRecord> {
    const docs = PULLS_DOCS.create;
    const title = optionalString(body, "title", docs);
    const headParam = optionalString(body, "head", docs);
    const baseRef = optionalString(body, "base", docs);
    const missing = (field: string) => ({ resource: "PullRequest", field, code: "missing_field" });
    if (headParam === undefined || baseRef === undefined || title === undefined) {
      const errors = [
        ...(title === undefined ? [missing("title")] : []),
        ...(headParam === undefined ? [missing("head")] : []),
        ...(baseRef === undefined ? [missing("base")] : []),
      ];
      throw validationFailed(docs, ...errors);
    }
    const { owner } = repository.config;
    const [headOwner, headRef] = headParam.includes(":") ? splitOnce(headParam, ":") : [owner, headParam];
    const { git } = repository;
    const head = headOwner.toLowerCase() === owner.toLowerCase() ? await git.branchHead(headRef) : undefined;
    const base = await git.branchHead(baseRef);
    if (head === undefined)
      throw validationFailed(docs, { resource: "PullRequest", field: "head", code: "invalid" });
    if (base === undefined)
      throw validationFailed(docs, { resource: "PullRequest", field: "base", code: "invalid" });
    const existing = repository.pulls.find(
      (pull) => pull.state === "open" && pull.headRef === headRef && pull.baseRef === baseRef,
    );
    if (existing !== undefined) {
      throw validationFailed(docs, {
        resource: "PullRequest",
        code: "custom",
        message: `A pull request already exists for ${owner}:${headRef}.`,
      });
    }
    if (await git.isAncestor(head, base)) {
      throw validationFailed(docs, {
        resource: "PullRequest",
        code: "custom",
        message: `No commits between ${baseRef} and ${headRef}`,
      });
    }
    const now = timestamp();
    const pull: PullRecord = {
      number: repository.pulls.length + 1, // per repository (GitHub shares the count with issues)
      id: this.nextId++,
      title,
      body: optionalString(body, "body", docs) ?? null,
      state: "open",
      draft: body["draft"] === true,
      headRef,
      baseRef,
      headSha: head,
      baseSha: base,
      user: this.user,
      createdAt: now,
      updatedAt: now,
      closedAt: null,
      mergedAt: null,
      mergedBy: null,
      merged: false,
      mergeCommitSha: null,
    };
    repository.pulls.push(pull);
    return pull;
  }

  private async updatePull(
    repository: RepositoryRecord,
    pull: PullRecord,
    body: Record<string, unknown>,
  ): Promise<void> {
    const docs = PULLS_DOCS.update;
    const title = optionalString(body, "title", docs);
    const text = body["body"] === null ? null : optionalString(body, "body", docs);
    const state = optionalString(body, "state", docs);
    const baseRef = optionalString(body, "base", docs);
    if (state !== undefined && state !== "open" && state !== "closed") {
      throw validationFailed(docs, { resource: "PullRequest", field: "state", code: "invalid" });
    }
    if (baseRef !== undefined && (await repository.git.branchHead(baseRef)) === undefined) {
      throw validationFailed(docs, { resource: "PullRequest", field: "base", code: "invalid" });
    }
    if (state === "open" && pull.state === "closed" && !pull.merged) {
      const other = repository.pulls.find(
        (p) => p !== pull && p.state === "open" && p.headRef === pull.headRef && p.baseRef === pull.baseRef,
      );
      if (other !== undefined) {
        throw validationFailed(docs, {
          resource: "PullRequest",
          code: "custom",
          message: `A pull request already exists for ${repository.config.owner}:${pull.headRef}.`,
        });
      }
      pull.state = "open";
      pull.closedAt = null;
    } else if (state === "closed" && pull.state === "open") {
      pull.state = "closed";
      pull.closedAt = timestamp();
    }
    if (title !== undefined) pull.title = title;
    if (text !== undefined) pull.body = text;
    if (baseRef !== undefined && !pull.merged) pull.baseRef = baseRef;
    pull.updatedAt = timestamp();
    await this.refresh(repository, pull);
  }

  private answerInjected(res: Response, injected: Injected): void {
    if (injected.kind === "failure") {
      const message = `simulated failure injected by GitHubSimulator (HTTP ${injected.status})`;
      sendError(res, new GitHubApiError(injected.status, message, DOCS));
      return;
    }
    const reset = String(Math.floor(Date.now() / 1000) + 3600);
    if (injected.primary) {
      this.setRateLimitHeaders(res, 0, reset);
      const message = `API rate limit exceeded for user ID ${this.user.id}.`;
      sendError(res, new GitHubApiError(injected.status, message, PRIMARY_LIMIT_DOCS));
      return;
    }
    this.setRateLimitHeaders(res, RATE_LIMIT - this.used, reset);
    const headers: Record<string, string> =
      injected.retryAfterSeconds === null ? {} : { "retry-after": String(injected.retryAfterSeconds) };
    const requestId = String(res.getHeader("x-github-request-id"));
    const message =
      "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. " +
      `If you reach out to GitHub Support for help, please include the request ID ${requestId}.`;
    sendError(res, new GitHubApiError(injected.status, message, SECONDARY_LIMIT_DOCS, undefined, headers));
  }

  /**
   * The checks GitHub makes of an app's JWT, with the messages it answers (see readme): RS256 signature by the
   * key of the app named in `iss`, integer `iat` not in the future, integer `exp` in the future and at most 10
   * minutes ahead.
   */
  private verifyJwt(jwt: string | undefined): SimulatedApp {
    const undecodable = () => new GitHubApiError(401, "A JSON web token could not be decoded", DOCS);
    const [header, payload, signature, ...rest] = (jwt ?? "").split(".");
    if (header === undefined || payload === undefined || signature === undefined || rest.length > 0) {
      throw undecodable();
    }
    const json = (part: string): Record<string, unknown> => {
      try {
        const value: unknown = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
        if (typeof value === "object" && value !== null && !Array.isArray(value)) {
          return value as Record<string, unknown>;
        }
      } catch {
        // answered below
      }
      throw undecodable();
    };
    const claims = json(payload);
    if (json(header)["alg"] !== "RS256") throw undecodable();
    const iss = claims["iss"];
    const app = this.apps.find(
      (candidate) =>
        (typeof iss === "number" && iss === candidate.id) ||
        (typeof iss === "string" && (iss === String(candidate.id) || iss === candidate.clientId)),
    );
    if (app === undefined) throw new GitHubApiError(404, "Integration not found", DOCS);
    const signed = Buffer.from(`${header}.${payload}`);
    if (!verify("RSA-SHA256", signed, app.key, Buffer.from(signature, "base64url"))) throw undecodable();
    const now = Math.floor(this.now() / 1000);
    const iat = claims["iat"];
    if (typeof iat !== "number" || !Number.isInteger(iat) || iat > now) {
      throw new GitHubApiError(
        401,
        "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
        DOCS,
      );
    }
    const exp = claims["exp"];
    if (typeof exp !== "number" || !Number.isInteger(exp) || exp <= now) {
      throw new GitHubApiError(
        401,
        "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        DOCS,
      );
    }
    if (exp > now + JWT_MAX_AHEAD_S) {
      throw new GitHubApiError(401, "'Expiration time' claim ('exp') is too far in the future", DOCS);
    }
    return app;
  }

  private isLiveInstallationToken(token: string | undefined): boolean {
    const issued = this.issuedTokens.find((candidate) => candidate.token === token);
    return issued !== undefined && this.now() < issued.expiresAt;
  }

  private setRateLimitHeaders(res: Response, remaining: number, reset?: string): void {
    res.setHeader("x-ratelimit-limit", String(RATE_LIMIT));
    res.setHeader("x-ratelimit-remaining", String(Math.max(0, remaining)));
    res.setHeader("x-ratelimit-used", String(RATE_LIMIT - Math.max(0, remaining)));
    res.setHeader("x-ratelimit-reset", reset ?? String(Math.floor(Date.now() / 1000) + 3600));
    res.setHeader("x-ratelimit-resource", "core");
  }

  private findRepository(req: Request, docs: string): RepositoryRecord {
    const record = this.repositories.get(
      `${String(req.params["owner"])}/${String(req.params["repo"])}`.toLowerCase(),
    );
    if (record === undefined) throw notFound(docs);
    return record;
  }

  private findPull(repository: RepositoryRecord, req: Request, docs: string): PullRecord {
    const number = Number(req.params["number"]);
    const pull = repository.pulls.find((p) => p.number === number);
    if (pull === undefined) throw notFound(docs);
    return pull;
  }

  private repositoryOf(fullName: string): RepositoryRecord {
    const record = this.repositories.get(fullName.toLowerCase());
    if (record === undefined) throw new Error(`GitHubSimulator: no repository ${fullName}`);
    return record;
  }

  private pullOf(repository: RepositoryRecord, number: number): PullRecord {
    const pull = repository.pulls.find((p) => p.number === number);
    if (pull === undefined) {
      const { owner, repo } = repository.config;
      throw new Error(`GitHubSimulator: no pull request #${number} in ${owner}/${repo}`);
    }
    return pull;
  }

  private userNamed(login: string): UserRecord {
    let user = this.users.get(login);
    if (user === undefined) {
      user = { login, id: 100_000 + this.users.size };
      this.users.set(login, user);
    }
    return user;
  }
}

// ---- helpers ----

function sendError(res: Response, error: GitHubApiError): void {
  if (res.headersSent) {
    if (!res.writableEnded) res.end();
    return;
  }
  for (const [name, value] of Object.entries(error.headers)) res.setHeader(name, value);
  res.status(error.status).json({
    message: error.message,
    ...(error.errors ? { errors: error.errors } : {}),
    documentation_url: error.documentationUrl,
    status: String(error.status),
  });
}

function bodyOf(req: Request): Record<string, unknown> {
  const body: unknown = req.body;
  if (body === undefined || body === null) return {};
  if (typeof body !== "object" || Array.isArray(body))
    throw new GitHubApiError(400, "Problems parsing JSON", DOCS);
  return body as Record<string, unknown>;
}

function optionalString(body: Record<string, unknown>, field: string, docs: string): string | undefined {
  const value = body[field];
  if (value === undefined) return undefined;
  if (typeof value !== "string") {
    throw new GitHubApiError(
      422,
      `Invalid request.\n\nFor '${field}', ${JSON.stringify(value)} is not a string.`,
      docs,
    );
  }
  return value;
}

function requestQuery(req: Request): URLSearchParams {
  return new URL(req.originalUrl, "http://simulator.invalid").searchParams;
}

function splitOnce(value: string, separator: string): [string, string] {
  const index = value.indexOf(separator);
  return [value.slice(0, index), value.slice(index + separator.length)];
}

function linkHeader(
  base: string,
  repository: RepositoryRecord,
  query: URLSearchParams,
  page: number,
  last: number,
): string {
  const link = (target: number, rel: string) => {
    const params = new URLSearchParams(query);
    params.set("page", String(target));
    return `<${base}/repos/${repository.config.owner}/${repository.config.repo}/pulls?${params}>; rel="${rel}"`;
  };
  const parts: string[] = [];
  if (page > 1) parts.push(link(page - 1, "prev"));
  if (page < last) parts.push(link(page + 1, "next"), link(last, "last"));
  if (page > 1) parts.push(link(1, "first"));
  return parts.join(", ");
}

function noreplyEmail(user: UserRecord): string {
  return `${user.id}+${user.login}@users.noreply.github.com`;
}

function nodeId(prefix: string, id: number): string {
  return `${prefix}_kwDO${Buffer.from(String(id)).toString("base64url")}`;
}

/** ISO 8601 in UTC with whole seconds, as GitHub writes times. */
function timestamp(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}

function isBodyParserError(error: unknown): boolean {
  return (
    error instanceof Error && "type" in error && typeof (error as { status?: unknown }).status === "number"
  );
}
