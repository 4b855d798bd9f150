import { Octokit } from "@octokit/rest";
import { z } from "zod";
import { RetryableError, TerminalError } from "../../shared/errors.js";
import type {
  MergeOptions,
  MergeOutcome,
  OpenedPullRequest,
  PullRequestDraft,
  PullRequestHost,
  PullRequestStatus,
} from "./pull-request-host.js";
import { callWithPolicy, DEFAULT_REQUEST_POLICY, RateLimitedError, retryAfterMs } from "./request-policy.js";
import type { RequestPolicy } from "./request-policy.js";
import type { TokenSource } from "../gitops-repo.js";

export interface GitHubPullRequestHostOptions {
  /** The name of the repository in the configuration, for messages. */
  repositoryName: string;
  owner: string;
  repo: string;
  /** A token, or where to get the current one (a GitHub App's installation token) before each call. */
  token: string | TokenSource;
  /** `https://api.github.com` (default), or GitHub Enterprise Server's `https://<host>/api/v3`. */
  apiUrl?: string;
  requestTimeoutMs?: number;
  policy?: RequestPolicy;
  /** Injected so tests need no global HTTP patching. */
  fetch?: typeof globalThis.fetch;
}

/** GitHub's documented advice when a secondary rate limit comes without `retry-after`: wait at least a minute. */
const SECONDARY_LIMIT_DEFAULT_WAIT_MS = 60_000;

const pullSchema = z.object({
  number: z.number().int(),
  html_url: z.string(),
  state: z.enum(["open", "closed"]),
  title: z.string(),
  body: z.string().nullable().optional(),
  merged: z.boolean().optional(),
  merge_commit_sha: z.string().nullable().optional(),
  head: z.object({ sha: z.string(), ref: z.string() }),
});
type Pull = z.infer<typeof pullSchema>;
const mergeResultSchema = z.object({ sha: z.string(), merged: z.boolean(), message: z.string().optional() });

/** What octokit throws for an HTTP answer that is not 2xx (`RequestError`), read without importing it. */
interface HttpFailure {
  status: number;
  message: string;
  response?: { headers?: Record<string, string | number | undefined>; data?: unknown };
}

/** Pull requests on GitHub and GitHub Enterprise Server through `@octokit/rest`. */
export class GitHubPullRequestHost implements PullRequestHost {
  readonly provider = "github";
  /** GitHub's REST API cannot turn auto-merge on (only GraphQL `enablePullRequestAutoMerge` can). */
  readonly supportsAutoMerge = false;
  private readonly octokit: Octokit;
  private readonly policy: RequestPolicy;
  private readonly apiUrl: string;

  constructor(private readonly options: GitHubPullRequestHostOptions) {
    this.apiUrl = (options.apiUrl ?? "https://api.github.com").replace(/\/+$/, "");
    this.policy = options.policy ?? DEFAULT_REQUEST_POLICY;
    const { token } = options;
    this.octokit = new Octokit({
      ...(typeof token === "string" ? { auth: token } : {}),
      baseUrl: this.apiUrl,
      userAgent: "keptn-gitops-service",
      request: { ...(options.fetch ? { fetch: options.fetch } : {}) },
      log: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
    });
    if (typeof token !== "string") {
      this.octokit.hook.before("request", async (request) => {
        request.headers.authorization = `token ${await token(request.request?.signal ?? undefined)}`;
      });
    }
  }

  async ensurePullRequest(draft: PullRequestDraft, signal?: AbortSignal): Promise<OpenedPullRequest> {
    const open = await this.findOpen(draft, signal);
    if (open) return this.update(open, draft, signal);
    try {
      const created = await this.call(`open a pull request from ${draft.branch}`, signal, (request) =>
        this.octokit.rest.pulls.create({ ...this.repo(), head: draft.branch, ...pick(draft), request }),
      );
      const pull = this.parse(pullSchema, created, "the new pull request");
      return { number: pull.number, url: pull.html_url, state: "open", created: true };
    } catch (error) {
      // Someone (another replica) opened it between our list and our create: update that one.
      if (error instanceof PullRequestAlreadyExists) {
        const raced = await this.findOpen(draft, signal);
        if (raced) return this.update(raced, draft, signal);
      }
      throw error;
    }
  }

  async get(number: number, signal?: AbortSignal): Promise<PullRequestStatus> {
    const data = await this.call(`read pull request #${number}`, signal, (request) =>
      this.octokit.rest.pulls.get({ ...this.repo(), pull_number: number, request }),
    );
    return statusOf(this.parse(pullSchema, data, `pull request #${number}`));
  }

  async merge(number: number, options: MergeOptions = {}, signal?: AbortSignal): Promise<MergeOutcome> {
    try {
      const data = await this.call(`merge pull request #${number}`, signal, (request) =>
        this.octokit.rest.pulls.merge({
          ...this.repo(),
          pull_number: number,
          merge_method: options.method ?? "merge",
          ...(options.sha ? { sha: options.sha } : {}),
          request,
        }),
      );
      const result = this.parse(mergeResultSchema, data, "the merge result");
      if (result.merged) return { outcome: "merged", commit: result.sha };
      return { outcome: "not-mergeable", reason: result.message ?? "GitHub did not merge" };
    } catch (error) {
      if (!(error instanceof MergeRefused)) throw error;
      if (error.status === 409) return { outcome: "head-moved", reason: error.said };
      // 405 also answers a pull request that a reviewer merged already: that is a merge.
      const now = await this.get(number, signal);
      if (now.state === "merged" && now.mergeCommit) return { outcome: "merged", commit: now.mergeCommit };
      return { outcome: "not-mergeable", reason: error.said };
    }
  }

  enableAutoMerge(): Promise<MergeOutcome> {
    return Promise.reject(
      new TerminalError(
        `GitHub's REST API cannot enable auto-merge (repository "${this.options.repositoryName}"); ` +
          `use pullRequest.mode "wait-for-merge" with auto-merge turned on in the repository settings, or "open-only"`,
      ),
    );
  }

  async close(number: number, signal?: AbortSignal): Promise<void> {
    await this.call(`close pull request #${number}`, signal, (request) =>
      this.octokit.rest.pulls.update({ ...this.repo(), pull_number: number, state: "closed", request }),
    );
  }

  private async findOpen(draft: PullRequestDraft, signal?: AbortSignal): Promise<Pull | undefined> {
    // `head` must be `owner:branch`: without the owner GitHub ignores the filter.
    const list = await this.call(`list the open pull requests of ${draft.branch}`, signal, (request) =>
      this.octokit.rest.pulls.list({
        ...this.repo(),
        head: `${this.options.owner}:${draft.branch}`,
        base: draft.base,
        state: "open",
        request,
      }),
    );
    const pulls = this.parse(z.array(pullSchema), list, "the list of pull requests");
    return pulls.find((pull) => pull.head.ref === draft.branch);
  }

  private async update(
    pull: Pull,
    draft: PullRequestDraft,
    signal?: AbortSignal,
  ): Promise<OpenedPullRequest> {
    if (pull.title !== draft.title || (pull.body ?? "") !== draft.body) {
      await this.call(`update pull request #${pull.number}`, signal, (request) =>
        this.octokit.rest.pulls.update({ ...this.repo(), pull_number: pull.number, ...pick(draft), request }),
      );
    }
    return { number: pull.number, url: pull.html_url, state: "open", created: false };
  }

  private repo() {
    return { owner: this.options.owner, repo: this.options.repo };
  }

  /** One API call under the request policy; octokit's errors become the service's error classes. */
  private async call<T>(
    attempt: string,
    signal: AbortSignal | undefined,
    operation: (request: { signal: AbortSignal }) => Promise<{ data: T }>,
  ): Promise<T> {
    return callWithPolicy(
      this.policy,
      async () => {
        const timeout = AbortSignal.timeout(this.options.requestTimeoutMs ?? 30_000);
        try {
          const response = await operation({ signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
          return response.data;
        } catch (error) {
          if (signal?.aborted) throw signal.reason;
          throw this.failure(attempt, error);
        }
      },
      signal,
    );
  }

  private failure(attempt: string, error: unknown): Error {
    const where = `GitHub at ${this.apiUrl}`;
    const repository = `${this.options.owner}/${this.options.repo}`;
    if (!isHttpFailure(error) || error.status >= 500 || error.status === 0) {
      // octokit reports network errors and timeouts as status 500 too
      return new RetryableError(
        `could not ${attempt} in ${repository}: ${where} did not answer (${said(error)})`,
        {
          cause: error,
        },
      );
    }
    const { status } = error;
    const headers = error.response?.headers ?? {};
    const text = said(error);
    const rateLimit = rateLimitWait(status, headers, text);
    if (rateLimit !== undefined) {
      return new RateLimitedError(
        `could not ${attempt} in ${repository}: ${where} is rate limiting this token (${status}); waiting ${Math.ceil(rateLimit / 1000)} s`,
        rateLimit,
      );
    }
    const name = this.options.repositoryName;
    if (status === 401)
      return new TerminalError(
        `could not ${attempt}: ${where} rejected the token (401: ${text}); check the pull-request token of repository "${name}"`,
        { cause: error },
      );
    if (status === 403)
      return new TerminalError(
        `could not ${attempt} in ${repository}: ${where} answered 403 (${text}); the token needs write access to pull requests ` +
          `(classic: "repo" scope; fine-grained: "Pull requests: read and write", "Contents: read and write") in repository "${name}"`,
        { cause: error },
      );
    if (status === 404)
      return new TerminalError(
        `could not ${attempt}: ${where} has no repository ${repository} or no such pull request (404); ` +
          `check the URL of repository "${name}", pullRequest.apiUrl, and that the token can see the repository`,
        { cause: error },
      );
    if (status === 405 || status === 409) return new MergeRefused(status, text);
    if (status === 422) {
      const detail = validationDetail(error.response?.data) ?? text;
      if (/already exists/i.test(detail)) return new PullRequestAlreadyExists(detail);
      return new TerminalError(
        `could not ${attempt} in ${repository}: GitHub refused it (422: ${detail}); the branch must be pushed and differ from the base`,
        { cause: error },
      );
    }
    return new TerminalError(`could not ${attempt} in ${repository}: ${where} answered ${status} (${text})`, {
      cause: error,
    });
  }

  private parse<S extends z.ZodType>(schema: S, data: unknown, what: string): z.infer<S> {
    const parsed = schema.safeParse(data);
    if (!parsed.success) {
      throw new TerminalError(
        `GitHub at ${this.apiUrl} answered with ${what} in a shape this service does not understand: ${parsed.error.issues[0]?.message ?? "?"}`,
      );
    }
    return parsed.data;
  }
}

/** 405/409 of the merge endpoint: an answer for `merge`; terminal where it is not read. */
class MergeRefused extends TerminalError {
  override name = "TerminalError";
  constructor(
    readonly status: 405 | 409,
    readonly said: string,
  ) {
    super(`GitHub refused the merge (${status}: ${said})`);
  }
}

/** 422 "A pull request already exists for owner:branch.": a race with another writer; terminal where not read. */
class PullRequestAlreadyExists extends TerminalError {
  override name = "TerminalError";
}

function statusOf(pull: Pull): PullRequestStatus {
  const merged = pull.merged === true;
  return {
    number: pull.number,
    url: pull.html_url,
    title: pull.title,
    // before the merge `merge_commit_sha` is a test merge commit: only `merged` says "merged"
    state: merged ? "merged" : pull.state,
    ...(merged && pull.merge_commit_sha ? { mergeCommit: pull.merge_commit_sha } : {}),
    headSha: pull.head.sha,
  };
}

function pick(draft: PullRequestDraft) {
  return { base: draft.base, title: draft.title, body: draft.body };
}

/**
 * How long GitHub asks to wait, or undefined when the answer is no rate limit ("Rate limits for the REST API"):
 * `retry-after` (secondary limits); `x-ratelimit-remaining: 0` until `x-ratelimit-reset` (primary limit); a
 * secondary limit without either: at least a minute.
 */
export function rateLimitWait(
  status: number,
  headers: Record<string, string | number | undefined>,
  message: string,
  now = Date.now(),
): number | undefined {
  if (status !== 403 && status !== 429) return undefined;
  const header = (name: string) => {
    const value = headers[name];
    return value === undefined ? undefined : String(value);
  };
  const retryAfter = retryAfterMs(header("retry-after"), now);
  if (retryAfter !== undefined) return retryAfter;
  const reset = Number(header("x-ratelimit-reset"));
  if (header("x-ratelimit-remaining") === "0" && Number.isFinite(reset))
    return Math.max(0, reset * 1000 - now);
  if (status === 429 || /rate limit/i.test(message)) return SECONDARY_LIMIT_DEFAULT_WAIT_MS;
  return undefined;
}

function isHttpFailure(error: unknown): error is HttpFailure {
  return error instanceof Error && typeof (error as { status?: unknown }).status === "number";
}

/** GitHub's `message` from the answer, else the error's own text; never the request (it holds the token). */
function said(error: unknown): string {
  const data = isHttpFailure(error) ? error.response?.data : undefined;
  const message = (data as { message?: unknown } | undefined)?.message;
  if (typeof message === "string") return message;
  return error instanceof Error ? error.message.slice(0, 200) : String(error);
}

function validationDetail(data: unknown): string | undefined {
  const errors = (data as { errors?: unknown } | undefined)?.errors;
  if (!Array.isArray(errors)) return undefined;
  const parts = errors.map((item: { message?: unknown; field?: unknown; code?: unknown }) =>
    typeof item.message === "string" ? item.message : `${String(item.field)} ${String(item.code)}`,
  );
  return parts.length > 0 ? parts.join("; ") : undefined;
}
