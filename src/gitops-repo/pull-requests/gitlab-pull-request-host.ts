import { z } from "zod";
import { RetryableError, TerminalError } from "../../shared/errors.js";
import type {
  MergeOptions,
  MergeOutcome,
  OpenedPullRequest,
  PullRequestDraft,
  PullRequestHost,
  PullRequestState,
  PullRequestStatus,
} from "./pull-request-host.js";
import { callWithPolicy, DEFAULT_REQUEST_POLICY, RateLimitedError, retryAfterMs } from "./request-policy.js";
import type { RequestPolicy } from "./request-policy.js";
import type { TokenSource } from "../gitops-repo.js";

export interface GitLabPullRequestHostOptions {
  /** The name of the repository in the configuration, for messages. */
  repositoryName: string;
  /** `namespace/project`, subgroups included; sent URL-encoded as the project id. */
  projectPath: string;
  /** A token, or where to get the current one before each call. */
  token: string | TokenSource;
  /** `PRIVATE-TOKEN` (personal, project and group access tokens; default) or `Authorization: Bearer` (OAuth). */
  tokenHeader?: "private-token" | "bearer";
  /** The API root, e.g. `https://gitlab.com/api/v4` (default) or `https://gitlab.example.com/api/v4`. */
  apiUrl?: string;
  requestTimeoutMs?: number;
  policy?: RequestPolicy;
  /** Injected so tests need no global HTTP patching. */
  fetch?: typeof globalThis.fetch;
}

/** When GitLab answers 429 without `Retry-After`. */
const DEFAULT_RATE_LIMIT_WAIT_MS = 60_000;

const mergeRequestSchema = z.object({
  iid: z.number().int(),
  web_url: z.string(),
  state: z.enum(["opened", "closed", "merged", "locked"]),
  title: z.string(),
  description: z.string().nullable().optional(),
  source_branch: z.string(),
  sha: z.string().nullable().optional(),
  merge_commit_sha: z.string().nullable().optional(),
  squash_commit_sha: z.string().nullable().optional(),
  merge_when_pipeline_succeeds: z.boolean().optional(),
});
type MergeRequest = z.infer<typeof mergeRequestSchema>;

/** Merge requests on GitLab (gitlab.com or self-managed) over the REST API v4. */
export class GitLabPullRequestHost implements PullRequestHost {
  readonly provider = "gitlab";
  readonly supportsAutoMerge = true;
  private readonly fetch: typeof globalThis.fetch;
  private readonly policy: RequestPolicy;
  private readonly apiUrl: string;
  private readonly project: string;

  constructor(private readonly options: GitLabPullRequestHostOptions) {
    this.fetch = options.fetch ?? globalThis.fetch;
    this.policy = options.policy ?? DEFAULT_REQUEST_POLICY;
    this.apiUrl = (options.apiUrl ?? "https://gitlab.com/api/v4").replace(/\/+$/, "");
    this.project = `${this.apiUrl}/projects/${encodeURIComponent(options.projectPath)}`;
  }

  async ensurePullRequest(draft: PullRequestDraft, signal?: AbortSignal): Promise<OpenedPullRequest> {
    const open = await this.findOpen(draft, signal);
    if (open) return this.update(open, draft, signal);
    try {
      const created = await this.call(
        `open a merge request from ${draft.branch}`,
        "POST",
        "/merge_requests",
        {
          source_branch: draft.branch,
          target_branch: draft.base,
          title: draft.title,
          description: draft.body,
        },
        signal,
        [409],
      );
      const mr = this.parse(mergeRequestSchema, created, "the new merge request");
      return { number: mr.iid, url: mr.web_url, state: "open", created: true };
    } catch (error) {
      // Another writer opened it between our list and our create: update that one.
      if (error instanceof Refused && error.status === 409) {
        const raced = await this.findOpen(draft, signal);
        if (raced) return this.update(raced, draft, signal);
      }
      throw error;
    }
  }

  async get(number: number, signal?: AbortSignal): Promise<PullRequestStatus> {
    const data = await this.call(
      `read merge request !${number}`,
      "GET",
      `/merge_requests/${number}`,
      undefined,
      signal,
    );
    return statusOf(this.parse(mergeRequestSchema, data, `merge request !${number}`));
  }

  merge(number: number, options: MergeOptions = {}, signal?: AbortSignal): Promise<MergeOutcome> {
    return this.accept(number, options, false, signal);
  }

  /** `merge_when_pipeline_succeeds`: GitLab merges when the running pipeline passes, or at once without one. */
  enableAutoMerge(number: number, options: MergeOptions = {}, signal?: AbortSignal): Promise<MergeOutcome> {
    return this.accept(number, options, true, signal);
  }

  async close(number: number, signal?: AbortSignal): Promise<void> {
    const status = await this.get(number, signal);
    if (status.state !== "open") return;
    await this.call(
      `close merge request !${number}`,
      "PUT",
      `/merge_requests/${number}`,
      { state_event: "close" },
      signal,
    );
  }

  private async accept(
    number: number,
    options: MergeOptions,
    whenPipelineSucceeds: boolean,
    signal?: AbortSignal,
  ): Promise<MergeOutcome> {
    const body = {
      ...(options.sha ? { sha: options.sha } : {}),
      squash: options.method === "squash",
      ...(whenPipelineSucceeds ? { merge_when_pipeline_succeeds: true } : {}),
    };
    let mr: MergeRequest;
    try {
      const data = await this.call(
        `merge merge request !${number}`,
        "PUT",
        `/merge_requests/${number}/merge`,
        body,
        signal,
        [405, 406, 409, 422],
      );
      mr = this.parse(mergeRequestSchema, data, `merge request !${number}`);
    } catch (error) {
      if (!(error instanceof Refused)) throw error;
      if (error.status === 409) return { outcome: "head-moved", reason: error.said };
      // 405 also answers a merge request that a reviewer merged already: that is a merge.
      const now = await this.get(number, signal);
      if (now.state === "merged" && now.mergeCommit) return { outcome: "merged", commit: now.mergeCommit };
      return {
        outcome: "not-mergeable",
        reason: `${error.said} (draft, conflict, closed, or pipeline must succeed)`,
      };
    }
    const status = statusOf(mr);
    if (status.state === "merged" && status.mergeCommit)
      return { outcome: "merged", commit: status.mergeCommit };
    if (mr.merge_when_pipeline_succeeds === true) return { outcome: "scheduled" };
    return { outcome: "not-mergeable", reason: `GitLab answered the merge with state ${mr.state}` };
  }

  private async findOpen(draft: PullRequestDraft, signal?: AbortSignal): Promise<MergeRequest | undefined> {
    const query = new URLSearchParams({
      state: "opened",
      source_branch: draft.branch,
      target_branch: draft.base,
    });
    const list = await this.call(
      `list the open merge requests of ${draft.branch}`,
      "GET",
      `/merge_requests?${query.toString()}`,
      undefined,
      signal,
    );
    return this.parse(z.array(mergeRequestSchema), list, "the list of merge requests").find(
      (mr) => mr.source_branch === draft.branch,
    );
  }

  private async update(
    mr: MergeRequest,
    draft: PullRequestDraft,
    signal?: AbortSignal,
  ): Promise<OpenedPullRequest> {
    if (mr.title !== draft.title || (mr.description ?? "") !== draft.body) {
      await this.call(
        `update merge request !${mr.iid}`,
        "PUT",
        `/merge_requests/${mr.iid}`,
        { title: draft.title, description: draft.body },
        signal,
      );
    }
    return { number: mr.iid, url: mr.web_url, state: "open", created: false };
  }

  /** One API call under the request policy; a 4xx listed in `answers` comes back as `Refused` for the caller. */
  private call(
    attempt: string,
    method: string,
    path: string,
    body: unknown,
    signal?: AbortSignal,
    answers: readonly number[] = [],
  ): Promise<unknown> {
    return callWithPolicy(this.policy, () => this.once(attempt, method, path, body, signal, answers), signal);
  }

  private async once(
    attempt: string,
    method: string,
    path: string,
    body: unknown,
    signal: AbortSignal | undefined,
    answers: readonly number[],
  ): Promise<unknown> {
    const url = `${this.project}${path}`;
    const timeout = AbortSignal.timeout(this.options.requestTimeoutMs ?? 30_000);
    const { token: source } = this.options;
    const token = typeof source === "string" ? source : await source(signal);
    const auth: Record<string, string> =
      this.options.tokenHeader === "bearer"
        ? { authorization: `Bearer ${token}` }
        : { "private-token": token };
    let response: Response;
    try {
      response = await this.fetch(url, {
        method,
        headers: {
          ...auth,
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? null : JSON.stringify(body),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw new RetryableError(
        `could not ${attempt} in ${this.options.projectPath}: GitLab at ${this.apiUrl} did not answer (${(error as Error).message})`,
        {
          cause: error,
        },
      );
    }
    const text = await response.text();
    if (!response.ok) throw this.failure(attempt, response, text, answers);
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new RetryableError(
        `could not ${attempt}: GitLab at ${this.apiUrl} answered with a body that is not JSON`,
      );
    }
  }

  private failure(attempt: string, response: Response, text: string, answers: readonly number[]): Error {
    const { status } = response;
    const where = `GitLab at ${this.apiUrl}`;
    const project = this.options.projectPath;
    const name = this.options.repositoryName;
    const said = gitlabMessage(text);
    if (status === 429) {
      const wait = retryAfterMs(response.headers.get("retry-after")) ?? DEFAULT_RATE_LIMIT_WAIT_MS;
      return new RateLimitedError(
        `could not ${attempt} in ${project}: ${where} is rate limiting this token (429); waiting ${Math.ceil(wait / 1000)} s`,
        wait,
      );
    }
    if (status >= 500)
      return new RetryableError(`could not ${attempt} in ${project}: ${where} answered ${status} (${said})`);
    if (status === 401)
      return new TerminalError(
        `could not ${attempt}: ${where} rejected the token (401: ${said}); check the pull-request token of repository "${name}" (it needs the "api" scope and must not be expired)`,
      );
    if (status === 403)
      return new TerminalError(
        `could not ${attempt} in ${project}: ${where} answered 403 (${said}); the token needs the "api" scope and at least the Developer role in project ${project} (repository "${name}")`,
      );
    if (status === 404)
      return new TerminalError(
        `could not ${attempt}: ${where} has no project ${project} or no such merge request (404); check the URL of repository "${name}", pullRequest.apiUrl, and that the token can see the project`,
      );
    const message = `could not ${attempt} in ${project}: ${where} refused it (${status}: ${said})`;
    return answers.includes(status) ? new Refused(status, said, message) : new TerminalError(message);
  }

  private parse<S extends z.ZodType>(schema: S, data: unknown, what: string): z.infer<S> {
    const parsed = schema.safeParse(data);
    if (!parsed.success) {
      throw new TerminalError(
        `GitLab at ${this.apiUrl} answered with ${what} in a shape this service does not understand: ${parsed.error.issues[0]?.message ?? "?"}`,
      );
    }
    return parsed.data;
  }
}

/** A 4xx that some calls read as an answer (409 on create, 405/409 on merge); terminal where it is not read. */
class Refused extends TerminalError {
  override name = "TerminalError";
  constructor(
    readonly status: number,
    readonly said: string,
    message: string,
  ) {
    super(message);
  }
}

const STATES: Record<MergeRequest["state"], PullRequestState> = {
  opened: "open",
  locked: "open",
  merged: "merged",
  closed: "closed",
};

function statusOf(mr: MergeRequest): PullRequestStatus {
  const state = STATES[mr.state];
  // a fast-forward merge of a squashed MR has no merge commit: the squash commit is what landed
  const mergeCommit = mr.merge_commit_sha ?? mr.squash_commit_sha ?? undefined;
  return {
    number: mr.iid,
    url: mr.web_url,
    state,
    title: mr.title,
    ...(state === "merged" && mergeCommit ? { mergeCommit } : {}),
    ...(mr.sha ? { headSha: mr.sha } : {}),
  };
}

/** GitLab's `message` (a string, a list or a map) or Grape's `error`; else the start of the text. */
function gitlabMessage(text: string): string {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return text.trim().slice(0, 200) || "no message";
  }
  const { message, error } = (json ?? {}) as { message?: unknown; error?: unknown };
  const value = message ?? error;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return value.map(String).join("; ");
  if (value && typeof value === "object") {
    return Object.entries(value)
      .map(([key, item]) => `${key} ${Array.isArray(item) ? item.join(", ") : String(item)}`)
      .join("; ");
  }
  return text.slice(0, 200);
}
