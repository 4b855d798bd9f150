import { randomUUID } from "node:crypto";
import type { Server } from "node:http";
import express from "express";
import type { NextFunction, Request, Response } from "express";
import { close, listen } from "../../../src/http/http-server.js";
import { BareRepo, RefMovedError, TaskQueue } from "../../support/bare-repo.js";
import type { GitIdentity } from "../../support/bare-repo.js";

// A stand-in for the GitLab REST API v4 (merge requests and the project), over real HTTP, for projects backed by
// real bare git repos. Merges are made in the bare repo with git plumbing, so a GitOps tool reading the repo sees
// the merge commit. Shapes: doc/api/merge_requests.md and doc/api/rest/index.md of GitLab. See readme.md.

export interface SimulatedProject {
  /** numeric project id */
  id: number;
  /** `namespace/project`; the API also takes it URL-encoded as `:id` */
  path: string;
  /** filesystem path of the bare repo */
  gitDir: string;
  /** default "main" */
  defaultBranch?: string;
  /** what `http_url_to_repo` reports (e.g. the GitHttpServer URL the service pushes to) */
  httpUrlToRepo?: string;
  /**
   * The project has CI: a new merge request starts with a running head pipeline (default false: no pipeline until
   * `setPipeline`).
   */
  pipelineOnOpen?: boolean;
  /** the project setting "Pipelines must succeed" (default false) */
  onlyAllowMergeIfPipelineSucceeds?: boolean;
}

export interface GitLabSimulatorOptions {
  /** the accepted token (`PRIVATE-TOKEN` header, `Authorization: Bearer`, or `private_token` query) */
  token: string;
  projects: SimulatedProject[];
  /** username of the token's user, who opens the merge requests (default "keptn-bot") */
  username?: string;
  /**
   * Status of a merge refused because of conflicts: 405 (current GitLab, "405 Method Not Allowed") or 406
   * (older GitLab, "Branch cannot be merged"). Default 405.
   */
  conflictStatus?: 405 | 406;
  /** default 127.0.0.1 */
  host?: string;
  /** default 0 = a free port */
  port?: number;
}

/** The head pipeline of a merge request, as set by `setPipeline` (none at first). */
export type PipelineStatus = "none" | "running" | "success" | "failed";

export interface RecordedRequest {
  method: string;
  /** path as sent (project paths stay URL-encoded), e.g. "/api/v4/projects/sockshop%2Fgitops/merge_requests" */
  path: string;
  query: Record<string, string>;
  body?: unknown;
}

export interface RateLimitAnswer {
  /** the `Retry-After` header in seconds (default 60); null leaves it out */
  retryAfterSeconds?: number | null;
  /**
   * "rack-attack" (default): the user and IP throttles, plain-text "Retry later" with RateLimit-* headers;
   * "endpoint": a per-endpoint limit, JSON `{message}`.
   */
  kind?: "rack-attack" | "endpoint";
}

type MergeRequestState = "opened" | "closed" | "merged";

interface UserRecord {
  id: number;
  username: string;
}

interface MergeParams {
  sha?: string;
  squash: boolean;
  mergeCommitMessage?: string;
  squashCommitMessage?: string;
  removeSourceBranch: boolean;
}

interface MergeRequestRecord {
  id: number;
  iid: number;
  title: string;
  description: string | null;
  state: MergeRequestState;
  sourceBranch: string;
  targetBranch: string;
  /** last known heads; refreshed from git while the merge request is opened */
  sha: string;
  targetSha: string;
  author: UserRecord;
  createdAt: string;
  updatedAt: string;
  mergedAt: string | null;
  mergeUser: UserRecord | null;
  closedAt: string | null;
  closedBy: UserRecord | null;
  mergeCommitSha: string | null;
  squashCommitSha: string | null;
  squash: boolean;
  removeSourceBranch: boolean | null;
  labels: string[];
  pipeline: PipelineStatus;
  /** set while "merge when pipeline succeeds" waits for the pipeline */
  autoMerge?: MergeParams;
  mergeError: string | null;
  /** mergeability computed for (sha, targetSha); absent until the asynchronous check ran */
  checked?: { sha: string; target: string; conflict: boolean };
}

interface ProjectRecord {
  config: SimulatedProject & { defaultBranch: string };
  git: BareRepo;
  queue: TaskQueue;
  mergeRequests: MergeRequestRecord[];
}

/** An answer in GitLab's error shape: `{message}` (a string, a list or a map) or Grape's `{error}`. */
class GitLabApiError extends Error {
  override readonly name = "GitLabApiError";
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(JSON.stringify(body));
  }
}

const message = (status: number, text: unknown) => new GitLabApiError(status, { message: text });
const methodNotAllowed = () => message(405, "405 Method Not Allowed");
const mergeRequestNotFound = () => message(404, "404 Not found");

type Injected =
  | { kind: "failure"; status: number }
  | { kind: "rate-limit"; retryAfterSeconds: number | null; style: "rack-attack" | "endpoint" };

export class GitLabSimulator {
  /** every HTTP request received, in order */
  readonly requests: RecordedRequest[] = [];
  /** internal failures that were not an API answer; tests assert it stays empty */
  readonly errors: Error[] = [];

  private readonly token: string;
  private readonly user: UserRecord;
  private readonly conflictStatus: 405 | 406;
  private readonly host: string;
  private readonly port: number;
  private readonly projects = new Map<number, ProjectRecord>();
  private readonly users = new Map<string, UserRecord>();
  private readonly injected: Injected[] = [];
  private server?: Server;
  private baseUrl?: string;
  private nextMergeRequestId = 90_001;

  constructor(options: GitLabSimulatorOptions) {
    if (options.token.length === 0) throw new Error("GitLabSimulator: options.token must not be empty");
    this.token = options.token;
    this.user = this.userNamed(options.username ?? "keptn-bot");
    this.conflictStatus = options.conflictStatus ?? 405;
    this.host = options.host ?? "127.0.0.1";
    this.port = options.port ?? 0;
    for (const project of options.projects) this.addProject(project);
  }

  /** Base URL of the instance; the API is under `${url}/api/v4`. */
  get url(): string {
    if (this.baseUrl === undefined) throw new Error("GitLabSimulator: call start() before reading url");
    return this.baseUrl;
  }

  async start(): Promise<string> {
    if (this.server) throw new Error("GitLabSimulator: start() called twice");
    const { server, url } = await listen(this.buildHttpApp(), this.host, this.port);
    this.server = server;
    this.baseUrl = url;
    return url;
  }

  /** Closes the server and waits for git work under way. */
  async stop(): Promise<void> {
    if (this.server?.listening) await close(this.server);
    await Promise.all([...this.projects.values()].map((record) => record.queue.idle()));
  }

  addProject(project: SimulatedProject): void {
    if (this.projects.has(project.id))
      throw new Error(`GitLabSimulator: project ${project.id} already exists`);
    if ([...this.projects.values()].some((p) => p.config.path === project.path)) {
      throw new Error(`GitLabSimulator: project ${project.path} already exists`);
    }
    this.projects.set(project.id, {
      config: { ...project, defaultBranch: project.defaultBranch ?? "main" },
      git: new BareRepo(project.gitDir),
      queue: new TaskQueue(),
      mergeRequests: [],
    });
  }

  // ---- test hooks ----

  /** The next `count` API calls answer `status` (default 502) with `{message}` and are not processed. */
  injectFailures(count: number, status = 502): void {
    for (let i = 0; i < count; i++) this.injected.push({ kind: "failure", status });
  }

  /** The next API call answers 429 as GitLab's rate limiters do, and is not processed. */
  rateLimitNext(answer: RateLimitAnswer = {}): void {
    this.injected.push({
      kind: "rate-limit",
      retryAfterSeconds: answer.retryAfterSeconds === undefined ? 60 : answer.retryAfterSeconds,
      style: answer.kind ?? "rack-attack",
    });
  }

  /** A reviewer merges the merge request (the Merge button): a real merge commit in the bare repo. */
  mergeAsReviewer(
    project: number | string,
    iid: number,
    options: { squash?: boolean; reviewer?: string } = {},
  ): Promise<string> {
    const record = this.projectOf(project);
    const mr = this.mergeRequestOf(record, iid);
    const by = this.userNamed(options.reviewer ?? "reviewer");
    return record.queue.run(async () => {
      if (mr.state !== "opened") throw new Error(`GitLabSimulator: !${iid} is ${mr.state}`);
      await this.refresh(record, mr);
      const outcome = await this.mergeNow(record, mr, by, {
        squash: options.squash ?? mr.squash,
        removeSourceBranch: mr.removeSourceBranch ?? false,
      });
      if (outcome !== "merged") throw new Error(`GitLabSimulator: !${iid} cannot be merged (${outcome})`);
      return mr.mergeCommitSha ?? "";
    });
  }

  /** A reviewer closes the merge request without merging it. */
  closeAsReviewer(project: number | string, iid: number): Promise<void> {
    const record = this.projectOf(project);
    const mr = this.mergeRequestOf(record, iid);
    return record.queue.run(async () => {
      if (mr.state !== "opened") return;
      await this.refresh(record, mr);
      this.close(mr, this.userNamed("reviewer"));
    });
  }

  /**
   * Sets the head pipeline of the merge request. `success` merges one that waits in "merge when pipeline
   * succeeds" (for real, in the bare repo); `failed` cancels the automatic merge, as GitLab does.
   */
  setPipeline(project: number | string, iid: number, status: PipelineStatus): Promise<void> {
    const record = this.projectOf(project);
    const mr = this.mergeRequestOf(record, iid);
    return record.queue.run(async () => {
      mr.pipeline = status;
      mr.updatedAt = timestamp();
      const waiting = mr.autoMerge;
      if (waiting === undefined || mr.state !== "opened") return;
      if (status === "failed") {
        mr.autoMerge = undefined;
        return;
      }
      if (status !== "success") return;
      mr.autoMerge = undefined;
      await this.refresh(record, mr);
      const outcome = await this.mergeNow(record, mr, mr.mergeUser ?? this.user, waiting);
      if (outcome !== "merged") mr.mergeError = "Merge failed: the source branch cannot be merged";
    });
  }

  // ---- merging ----

  /** Merges at once; the merge request must be opened and refreshed. */
  private async mergeNow(
    project: ProjectRecord,
    mr: MergeRequestRecord,
    by: UserRecord,
    params: MergeParams,
  ): Promise<"merged" | "conflict" | "target-moved"> {
    const { git } = project;
    const source = mr.sha;
    const target = mr.targetSha;
    const identity = identityOf(by);
    const who = { author: identity, committer: identity };
    let theirs = source;
    let squashCommit: string | null = null;
    if (params.squash) {
      // GitLab squashes the source commits into one commit on the merge base, then merges that commit
      const base = await git.mergeBase(target, source);
      squashCommit = await git.commitTree(
        await git.treeOf(source),
        [base],
        params.squashCommitMessage ?? mr.title,
        who,
      );
      theirs = squashCommit;
    }
    const merged = await git.mergeTree(target, theirs);
    if (!merged.clean) return "conflict";
    const fullPath = project.config.path;
    const text =
      params.mergeCommitMessage ??
      `Merge branch '${mr.sourceBranch}' into '${mr.targetBranch}'\n\n${mr.title}\n\nSee merge request ${fullPath}!${mr.iid}`;
    const commit = await git.commitTree(merged.tree, [target, theirs], text, who);
    try {
      await git.moveBranch(mr.targetBranch, commit, target, `merge !${mr.iid}`);
    } catch (error) {
      if (error instanceof RefMovedError) return "target-moved";
      throw error;
    }
    if (params.removeSourceBranch) await git.deleteBranch(mr.sourceBranch, source).catch(() => undefined);
    const now = timestamp();
    Object.assign(mr, {
      state: "merged",
      mergedAt: now,
      updatedAt: now,
      mergeUser: by,
      mergeCommitSha: commit,
      squashCommitSha: squashCommit,
      squash: params.squash,
      targetSha: commit,
      mergeError: null,
      autoMerge: undefined,
    } satisfies Partial<MergeRequestRecord>);
    return "merged";
  }

  private close(mr: MergeRequestRecord, by: UserRecord): void {
    const now = timestamp();
    mr.state = "closed";
    mr.closedAt = mr.updatedAt = now;
    mr.closedBy = by;
    mr.autoMerge = undefined;
  }

  /** Reads the branch heads of an opened merge request from git. */
  private async refresh(project: ProjectRecord, mr: MergeRequestRecord): Promise<void> {
    if (mr.state !== "opened") return;
    const [source, target] = await Promise.all([
      project.git.branchHead(mr.sourceBranch),
      project.git.branchHead(mr.targetBranch),
    ]);
    if (source !== undefined) mr.sha = source;
    if (target !== undefined) mr.targetSha = target;
  }

  /** The asynchronous mergeability check: a read after the heads moved shows "checking", the next the result. */
  private async check(project: ProjectRecord, mr: MergeRequestRecord): Promise<void> {
    if (mr.state !== "opened" || this.isChecked(mr)) return;
    const merged = await project.git.mergeTree(mr.targetSha, mr.sha);
    mr.checked = { sha: mr.sha, target: mr.targetSha, conflict: !merged.clean };
  }

  private isChecked(mr: MergeRequestRecord): boolean {
    return mr.checked?.sha === mr.sha && mr.checked.target === mr.targetSha;
  }

  private pipelineBlocks(project: ProjectRecord, mr: MergeRequestRecord): boolean {
    return project.config.onlyAllowMergeIfPipelineSucceeds === true && mr.pipeline !== "success";
  }

  // ---- JSON ----

  private userJson(user: UserRecord) {
    return {
      id: user.id,
      username: user.username,
      name: user.username,
      state: "active",
      locked: false,
      avatar_url: null,
      web_url: `${this.url}/${user.username}`,
    };
  }

  private projectJson(project: ProjectRecord) {
    const { id, path, defaultBranch, httpUrlToRepo } = project.config;
    const name = path.split("/").at(-1) ?? path;
    return {
      id,
      name,
      path: name,
      path_with_namespace: path,
      default_branch: defaultBranch,
      web_url: `${this.url}/${path}`,
      http_url_to_repo: httpUrlToRepo ?? `${this.url}/${path}.git`,
      only_allow_merge_if_pipeline_succeeds: project.config.onlyAllowMergeIfPipelineSucceeds ?? false,
    };
  }

  private mergeRequestJson(project: ProjectRecord, mr: MergeRequestRecord) {
    const { id: projectId, path } = project.config;
    const checked = mr.state === "opened" && this.isChecked(mr);
    const conflict = checked && mr.checked?.conflict === true;
    const mergeStatus =
      mr.state !== "opened"
        ? "can_be_merged"
        : !checked
          ? "checking"
          : conflict
            ? "cannot_be_merged"
            : "can_be_merged";
    const detailed =
      mr.state !== "opened"
        ? "not_open"
        : isDraft(mr.title)
          ? "draft_status"
          : !checked
            ? "checking"
            : conflict
              ? "conflict"
              : this.pipelineBlocks(project, mr)
                ? mr.pipeline === "running"
                  ? "ci_still_running"
                  : "ci_must_pass"
                : "mergeable";
    const mergeUser = mr.mergeUser ? this.userJson(mr.mergeUser) : null;
    return {
      id: mr.id,
      iid: mr.iid,
      project_id: projectId,
      title: mr.title,
      description: mr.description,
      state: mr.state,
      created_at: mr.createdAt,
      updated_at: mr.updatedAt,
      merged_by: mr.state === "merged" ? mergeUser : null,
      merge_user: mergeUser,
      merged_at: mr.mergedAt,
      closed_by: mr.closedBy ? this.userJson(mr.closedBy) : null,
      closed_at: mr.closedAt,
      target_branch: mr.targetBranch,
      source_branch: mr.sourceBranch,
      user_notes_count: 0,
      upvotes: 0,
      downvotes: 0,
      author: this.userJson(mr.author),
      assignees: [],
      assignee: null,
      reviewers: [],
      source_project_id: projectId,
      target_project_id: projectId,
      labels: mr.labels,
      draft: isDraft(mr.title),
      work_in_progress: isDraft(mr.title),
      milestone: null,
      merge_when_pipeline_succeeds: mr.autoMerge !== undefined,
      merge_status: mergeStatus,
      detailed_merge_status: detailed,
      sha: mr.sha,
      merge_commit_sha: mr.mergeCommitSha,
      squash_commit_sha: mr.squashCommitSha,
      discussion_locked: null,
      should_remove_source_branch: mr.removeSourceBranch,
      force_remove_source_branch: mr.removeSourceBranch ?? false,
      reference: `!${mr.iid}`,
      references: { short: `!${mr.iid}`, relative: `!${mr.iid}`, full: `${path}!${mr.iid}` },
      web_url: `${this.url}/${path}/-/merge_requests/${mr.iid}`,
      time_stats: {
        time_estimate: 0,
        total_time_spent: 0,
        human_time_estimate: null,
        human_total_time_spent: null,
      },
      squash: mr.squash,
      squash_on_merge: mr.squash,
      task_completion_status: { count: 0, completed_count: 0 },
      has_conflicts: conflict,
      blocking_discussions_resolved: true,
      merge_error: mr.mergeError,
      head_pipeline:
        mr.pipeline === "none"
          ? null
          : {
              id: 70_000 + mr.id,
              sha: mr.sha,
              ref: `refs/merge-requests/${mr.iid}/head`,
              status: mr.pipeline,
            },
      diff_refs: { base_sha: mr.targetSha, head_sha: mr.sha, start_sha: mr.targetSha },
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
      const recorded: RecordedRequest = { method: req.method, path: url.pathname, query };
      this.requests.push(recorded);
      res.locals["recorded"] = recorded;
      res.setHeader("x-request-id", randomUUID().replaceAll("-", "").slice(0, 26).toUpperCase());
      next();
    });
    app.use(express.json({ type: ["application/json", "*/*+json"], limit: "5mb" }));
    app.use(express.urlencoded({ extended: true, limit: "5mb" }));
    app.use((req, res, next) => {
      if (req.body !== undefined) (res.locals["recorded"] as RecordedRequest).body = req.body;
      next();
    });

    const api = express.Router();
    api.use((req, res, next) => {
      const injected = this.injected.shift();
      if (injected !== undefined) {
        this.answerInjected(res, injected);
        return;
      }
      const bearer = /^bearer\s+(\S+)\s*$/i.exec(req.get("authorization") ?? "")?.[1];
      const presented = req.get("private-token") ?? bearer ?? requestQuery(req).get("private_token");
      if (presented !== this.token) throw message(401, "401 Unauthorized");
      next();
    });
    api.get("/projects/:id", (req, res) => {
      res.status(200).json(this.projectJson(this.findProject(req)));
    });
    api.get("/projects/:id/merge_requests", async (req, res) => {
      const project = this.findProject(req);
      res.status(200).json(await this.listMergeRequests(project, requestQuery(req), res));
    });
    api.post("/projects/:id/merge_requests", async (req, res) => {
      const project = this.findProject(req);
      const params = paramsOf(req);
      const mr = await project.queue.run(() => this.createMergeRequest(project, params));
      res.status(201).json(this.mergeRequestJson(project, mr));
    });
    api.get("/projects/:id/merge_requests/:iid", async (req, res) => {
      const project = this.findProject(req);
      const mr = this.findMergeRequest(project, req);
      const json = await project.queue.run(async () => {
        await this.refresh(project, mr);
        const answer = this.mergeRequestJson(project, mr);
        await this.check(project, mr); // seen by the next read
        return answer;
      });
      res.status(200).json(json);
    });
    api.put("/projects/:id/merge_requests/:iid", async (req, res) => {
      const project = this.findProject(req);
      const mr = this.findMergeRequest(project, req);
      const params = paramsOf(req);
      await project.queue.run(() => this.updateMergeRequest(project, mr, params));
      res.status(200).json(this.mergeRequestJson(project, mr));
    });
    api.put("/projects/:id/merge_requests/:iid/merge", async (req, res) => {
      const project = this.findProject(req);
      const mr = this.findMergeRequest(project, req);
      const params = paramsOf(req);
      await project.queue.run(() => this.acceptMergeRequest(project, mr, params));
      res.status(200).json(this.mergeRequestJson(project, mr));
    });
    api.post("/projects/:id/merge_requests/:iid/cancel_merge_when_pipeline_succeeds", async (req, res) => {
      const project = this.findProject(req);
      const mr = this.findMergeRequest(project, req);
      await project.queue.run(async () => {
        if (mr.state === "closed") throw message(406, "Can't cancel the automatic merge");
        mr.autoMerge = undefined;
      });
      res.status(201).json(this.mergeRequestJson(project, mr));
    });
    app.use("/api/v4", api);

    app.use((_req, _res) => {
      throw new GitLabApiError(404, { error: "404 Not Found" });
    });
    app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
      if (error instanceof GitLabApiError) {
        sendJson(res, error.status, error.body);
      } else if (isBodyParserError(error)) {
        sendJson(res, 400, { error: "The provided content-type 'application/json' is not supported." });
      } else {
        this.errors.push(error instanceof Error ? error : new Error(String(error)));
        sendJson(res, 500, { message: `500 Internal Server Error: simulator error: ${String(error)}` });
      }
    });
    return app;
  }

  private async listMergeRequests(project: ProjectRecord, query: URLSearchParams, res: Response) {
    const state = query.get("state") ?? "all";
    if (!["opened", "closed", "locked", "merged", "all"].includes(state)) {
      throw new GitLabApiError(400, { error: "state does not have a valid value" });
    }
    const source = query.get("source_branch");
    const target = query.get("target_branch");
    const iids = query.getAll("iids[]").map(Number);
    const orderBy = query.get("order_by") === "updated_at" ? "updatedAt" : "createdAt";
    const ascending = query.get("sort") === "asc";
    const perPage = Math.min(100, Math.max(1, Number(query.get("per_page") ?? 20) || 20));
    const page = Math.max(1, Number(query.get("page") ?? 1) || 1);
    return project.queue.run(async () => {
      const matching = project.mergeRequests.filter(
        (mr) =>
          (state === "all" || mr.state === state) &&
          (source === null || mr.sourceBranch === source) &&
          (target === null || mr.targetBranch === target) &&
          (iids.length === 0 || iids.includes(mr.iid)),
      );
      matching.sort((a, b) => {
        const order = a[orderBy].localeCompare(b[orderBy]) || a.iid - b.iid;
        return ascending ? order : -order;
      });
      const totalPages = Math.max(1, Math.ceil(matching.length / perPage));
      res.setHeader("x-page", String(page));
      res.setHeader("x-per-page", String(perPage));
      res.setHeader("x-total", String(matching.length));
      res.setHeader("x-total-pages", String(totalPages));
      res.setHeader("x-next-page", page < totalPages ? String(page + 1) : "");
      res.setHeader("x-prev-page", page > 1 ? String(page - 1) : "");
      const items = [];
      for (const mr of matching.slice((page - 1) * perPage, page * perPage)) {
        await this.refresh(project, mr);
        items.push(this.mergeRequestJson(project, mr));
      }
      return items;
    });
  }

  private async createMergeRequest(
    project: ProjectRecord,
    params: Record<string, unknown>,
  ): Promise<MergeRequestRecord> {
    const missing = ["source_branch", "target_branch", "title"].filter(
      (name) => stringParam(params, name) === undefined,
    );
    if (missing.length > 0) {
      throw new GitLabApiError(400, { error: missing.map((name) => `${name} is missing`).join(", ") });
    }
    const sourceBranch = stringParam(params, "source_branch") ?? "";
    const targetBranch = stringParam(params, "target_branch") ?? "";
    const title = stringParam(params, "title") ?? "";
    const { git } = project;
    const [source, target] = await Promise.all([git.branchHead(sourceBranch), git.branchHead(targetBranch)]);
    const problems: string[] = [];
    if (source === undefined) problems.push(`Source branch "${sourceBranch}" does not exist`);
    if (target === undefined) problems.push(`Target branch "${targetBranch}" does not exist`);
    if (sourceBranch === targetBranch)
      problems.push("You can't use same project/branch for source and target");
    if (problems.length > 0 || source === undefined || target === undefined) throw message(422, problems);
    const existing = project.mergeRequests.find(
      (mr) => mr.state === "opened" && mr.sourceBranch === sourceBranch && mr.targetBranch === targetBranch,
    );
    if (existing !== undefined) {
      throw message(409, [
        `Another open merge request already exists for this source branch: !${existing.iid}`,
      ]);
    }
    const now = timestamp();
    const mr: MergeRequestRecord = {
      id: this.nextMergeRequestId++,
      iid: project.mergeRequests.length + 1,
      title,
      description: stringParam(params, "description") ?? null,
      state: "opened",
      sourceBranch,
      targetBranch,
      sha: source,
      targetSha: target,
      author: this.user,
      createdAt: now,
      updatedAt: now,
      mergedAt: null,
      mergeUser: null,
      closedAt: null,
      closedBy: null,
      mergeCommitSha: null,
      squashCommitSha: null,
      squash: booleanParam(params, "squash") ?? false,
      removeSourceBranch: booleanParam(params, "remove_source_branch") ?? null,
      labels: labelsParam(params, "labels") ?? [],
      // A project with CI runs a pipeline for each new merge request; tests finish it with setPipeline.
      pipeline: project.config.pipelineOnOpen ? "running" : "none",
      mergeError: null,
    };
    project.mergeRequests.push(mr);
    return mr;
  }

  private async updateMergeRequest(
    project: ProjectRecord,
    mr: MergeRequestRecord,
    params: Record<string, unknown>,
  ): Promise<void> {
    const known = [
      "title",
      "description",
      "state_event",
      "target_branch",
      "squash",
      "remove_source_branch",
      "labels",
    ];
    if (!known.some((name) => params[name] !== undefined)) {
      throw new GitLabApiError(400, {
        error: `${known.join(", ")} are missing, at least one parameter must be provided`,
      });
    }
    const stateEvent = stringParam(params, "state_event");
    if (stateEvent !== undefined && stateEvent !== "close" && stateEvent !== "reopen") {
      throw new GitLabApiError(400, { error: "state_event does not have a valid value" });
    }
    const target = stringParam(params, "target_branch");
    if (target !== undefined && (await project.git.branchHead(target)) === undefined) {
      throw message(422, [`Target branch "${target}" does not exist`]);
    }
    if (stateEvent === "reopen" && mr.state === "closed") {
      const other = project.mergeRequests.find(
        (o) =>
          o !== mr &&
          o.state === "opened" &&
          o.sourceBranch === mr.sourceBranch &&
          o.targetBranch === mr.targetBranch,
      );
      if (other !== undefined) {
        throw message(409, [
          `Another open merge request already exists for this source branch: !${other.iid}`,
        ]);
      }
      mr.state = "opened";
      mr.closedAt = null;
      mr.closedBy = null;
    }
    const title = stringParam(params, "title");
    const description = stringParam(params, "description");
    if (mr.state !== "merged") {
      if (title !== undefined) mr.title = title;
      if (description !== undefined) mr.description = description;
      if (target !== undefined) mr.targetBranch = target;
      mr.squash = booleanParam(params, "squash") ?? mr.squash;
      mr.removeSourceBranch = booleanParam(params, "remove_source_branch") ?? mr.removeSourceBranch;
      mr.labels = labelsParam(params, "labels") ?? mr.labels;
    }
    if (stateEvent === "close" && mr.state === "opened") this.close(mr, this.user);
    mr.updatedAt = timestamp();
    await this.refresh(project, mr);
  }

  /** PUT .../merge: 405, 409 and 422 as doc/api/merge_requests.md "Merge a merge request" lists them. */
  private async acceptMergeRequest(
    project: ProjectRecord,
    mr: MergeRequestRecord,
    params: Record<string, unknown>,
  ): Promise<void> {
    if (mr.state !== "opened" || isDraft(mr.title)) throw methodNotAllowed();
    await this.refresh(project, mr);
    const whenPipelineSucceeds = booleanParam(params, "merge_when_pipeline_succeeds") ?? false;
    const automatic = whenPipelineSucceeds && mr.pipeline === "running";
    const immediate = !automatic && !this.pipelineBlocks(project, mr);
    if (!automatic && !immediate) throw methodNotAllowed();
    const conflict = !(await project.git.mergeTree(mr.targetSha, mr.sha)).clean;
    mr.checked = { sha: mr.sha, target: mr.targetSha, conflict };
    if (conflict) {
      if (automatic) throw message(422, "Branch cannot be merged");
      throw this.conflictStatus === 406 ? message(406, "Branch cannot be merged") : methodNotAllowed();
    }
    const sha = stringParam(params, "sha");
    if (sha !== undefined && sha !== mr.sha) throw message(409, "SHA does not match HEAD of source branch");
    const merge: MergeParams = {
      sha,
      squash: booleanParam(params, "squash") ?? mr.squash,
      mergeCommitMessage: stringParam(params, "merge_commit_message"),
      squashCommitMessage: stringParam(params, "squash_commit_message"),
      removeSourceBranch:
        booleanParam(params, "should_remove_source_branch") ?? mr.removeSourceBranch ?? false,
    };
    if (automatic) {
      mr.autoMerge = merge;
      mr.mergeUser = this.user;
      mr.updatedAt = timestamp();
      return;
    }
    const outcome = await this.mergeNow(project, mr, this.user, merge);
    if (outcome !== "merged") throw message(422, "Branch cannot be merged");
  }

  private answerInjected(res: Response, injected: Injected): void {
    if (injected.kind === "failure") {
      sendJson(res, injected.status, {
        message: `${injected.status} simulated failure injected by GitLabSimulator`,
      });
      return;
    }
    if (injected.retryAfterSeconds !== null) res.setHeader("Retry-After", String(injected.retryAfterSeconds));
    if (injected.style === "endpoint") {
      sendJson(res, 429, { message: "This endpoint has been requested too many times. Try again later." });
      return;
    }
    const resetAt = new Date(Date.now() + (injected.retryAfterSeconds ?? 60) * 1000);
    res.setHeader("RateLimit-Name", "throttle_authenticated_api");
    res.setHeader("RateLimit-Limit", "2000");
    res.setHeader("RateLimit-Observed", "2001");
    res.setHeader("RateLimit-Remaining", "0");
    res.setHeader("RateLimit-Reset", String(Math.floor(resetAt.getTime() / 1000)));
    res.setHeader("RateLimit-ResetTime", resetAt.toUTCString());
    res.status(429).type("text/plain").send("Retry later\n");
  }

  private findProject(req: Request): ProjectRecord {
    const id = String(req.params["id"]); // express decodes `sockshop%2Fgitops` to `sockshop/gitops`
    const record = /^\d+$/.test(id)
      ? this.projects.get(Number(id))
      : [...this.projects.values()].find((p) => p.config.path.toLowerCase() === id.toLowerCase());
    if (record === undefined) throw message(404, "404 Project Not Found");
    return record;
  }

  private findMergeRequest(project: ProjectRecord, req: Request): MergeRequestRecord {
    const iid = Number(req.params["iid"]);
    const mr = project.mergeRequests.find((m) => m.iid === iid);
    if (mr === undefined) throw mergeRequestNotFound();
    return mr;
  }

  private projectOf(project: number | string): ProjectRecord {
    const record =
      typeof project === "number"
        ? this.projects.get(project)
        : [...this.projects.values()].find((p) => p.config.path === project);
    if (record === undefined) throw new Error(`GitLabSimulator: no project ${project}`);
    return record;
  }

  private mergeRequestOf(project: ProjectRecord, iid: number): MergeRequestRecord {
    const mr = project.mergeRequests.find((m) => m.iid === iid);
    if (mr === undefined)
      throw new Error(`GitLabSimulator: no merge request !${iid} in ${project.config.path}`);
    return mr;
  }

  private userNamed(username: string): UserRecord {
    let user = this.users.get(username);
    if (user === undefined) {
      user = { id: 1000 + this.users.size, username };
      this.users.set(username, user);
    }
    return user;
  }
}

// ---- helpers ----

function sendJson(res: Response, status: number, body: unknown): void {
  if (res.headersSent) {
    if (!res.writableEnded) res.end();
    return;
  }
  res.status(status).json(body);
}

/** GitLab reads parameters from the query string and from a JSON or form body alike. */
function paramsOf(req: Request): Record<string, unknown> {
  const params: Record<string, unknown> = Object.fromEntries(requestQuery(req));
  const body: unknown = req.body;
  if (body !== null && typeof body === "object" && !Array.isArray(body)) Object.assign(params, body);
  return params;
}

function stringParam(params: Record<string, unknown>, name: string): string | undefined {
  const value = params[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  throw new GitLabApiError(400, { error: `${name} is invalid` });
}

function booleanParam(params: Record<string, unknown>, name: string): boolean | undefined {
  const value = params[name];
  if (value === undefined || value === null) return undefined;
  if (value === true || value === "true") return true;
  if (value === false || value === "false") return false;
  throw new GitLabApiError(400, { error: `${name} is invalid` });
}

function labelsParam(params: Record<string, unknown>, name: string): string[] | undefined {
  const value = params[name];
  if (value === undefined) return undefined;
  const list = Array.isArray(value) ? value.map(String) : String(value).split(",");
  return list.map((label) => label.trim()).filter((label) => label.length > 0);
}

function requestQuery(req: Request): URLSearchParams {
  return new URL(req.originalUrl, "http://simulator.invalid").searchParams;
}

function isDraft(title: string): boolean {
  return /^\s*(\[draft\]|\(draft\)|draft:|draft\s-\s|draft\s|\[wip\]|wip:)/i.test(title);
}

function identityOf(user: UserRecord): GitIdentity {
  return { name: user.username, email: `${user.username}@users.noreply.gitlab.example` };
}

/** ISO 8601 in UTC with milliseconds, as GitLab writes times. */
function timestamp(): string {
  return new Date().toISOString();
}

function isBodyParserError(error: unknown): boolean {
  return (
    error instanceof Error && "type" in error && typeof (error as { status?: unknown }).status === "number"
  );
}
