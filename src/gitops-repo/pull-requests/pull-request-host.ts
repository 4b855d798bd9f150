/**
 * The review step of a GitOps repository: a pull request (GitHub) or merge request (GitLab) from the deployment's
 * branch into the target branch. One port for both hosts; `@octokit/rest` and the GitLab REST API are used in this
 * folder only.
 */

export type PullRequestProvider = "github" | "gitlab";

/** `open` includes GitLab's `locked`; GitHub's "closed and merged" is `merged`. */
export type PullRequestState = "open" | "merged" | "closed";

/** What to open (or to update, when a pull request from `branch` into `base` is already open). */
export interface PullRequestDraft {
  /** The branch that holds the change, already pushed. */
  branch: string;
  /** The branch the change is for (the target's branch). */
  base: string;
  title: string;
  body: string;
}

export interface OpenedPullRequest {
  number: number;
  /** The page a person opens in the browser. */
  url: string;
  state: PullRequestState;
  /** False when an open pull request for the branch existed and was updated. */
  created: boolean;
}

export interface PullRequestStatus {
  number: number;
  url: string;
  state: PullRequestState;
  title: string;
  /** The commit on the base branch that holds the change; only when `state` is `merged`. */
  mergeCommit?: string;
  /** The head of the pull request's branch as the host sees it now. */
  headSha?: string;
}

export interface MergeOptions {
  /** Default `merge` (a merge commit). */
  method?: "merge" | "squash";
  /** Merge only if the branch head is still this commit (both hosts answer 409 otherwise). */
  sha?: string;
}

/**
 * The answer to a merge request. "Not mergeable" and "the head moved" are answers, not exceptions: the caller
 * decides whether to wait, push again or give up.
 */
export type MergeOutcome =
  | { outcome: "merged"; commit: string }
  /** Auto-merge is on: the host merges when the checks pass (`get` tells when). */
  | { outcome: "scheduled" }
  /** Closed, conflicting, blocked by branch protection, required checks or approvals, or a draft. */
  | { outcome: "not-mergeable"; reason: string }
  /** The branch is no longer at `MergeOptions.sha`. */
  | { outcome: "head-moved"; reason: string };

/** Every call takes the caller's signal; waiting out a rate limit ends when it aborts. */
export interface PullRequestHost {
  readonly provider: PullRequestProvider;
  /** True when `enableAutoMerge` can work on this host (GitLab); false on GitHub (REST has no auto-merge). */
  readonly supportsAutoMerge: boolean;
  /** Opens a pull request from `draft.branch`, or updates title and body of the open one for that branch. */
  ensurePullRequest(draft: PullRequestDraft, signal?: AbortSignal): Promise<OpenedPullRequest>;
  get(number: number, signal?: AbortSignal): Promise<PullRequestStatus>;
  merge(number: number, options?: MergeOptions, signal?: AbortSignal): Promise<MergeOutcome>;
  /** Merge when the checks pass; `merged` when the host merged at once (nothing to wait for). */
  enableAutoMerge(number: number, options?: MergeOptions, signal?: AbortSignal): Promise<MergeOutcome>;
  /** Closes without merging; closing a closed pull request is fine. */
  close(number: number, signal?: AbortSignal): Promise<void>;
}
