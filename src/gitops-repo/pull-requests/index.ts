// The pull-request layer as the rest of the service sees it: the port, the choice of host, the config schema and
// the words of a pull request. The adapters stay behind `createPullRequestHost`.
export type {
  MergeOptions,
  MergeOutcome,
  OpenedPullRequest,
  PullRequestDraft,
  PullRequestHost,
  PullRequestProvider,
  PullRequestState,
  PullRequestStatus,
} from "./pull-request-host.js";
export {
  choosePullRequestTarget,
  createPullRequestHost,
  PULL_REQUEST_PROVIDERS,
} from "./pull-request-hosts.js";
export type { HostDependencies, PullRequestTarget } from "./pull-request-hosts.js";
export { DEFAULT_REQUEST_POLICY, RateLimitedError } from "./request-policy.js";
export type { RequestPolicy } from "./request-policy.js";
export { pullRequestConfigSchema, pullRequestModeSchema } from "./schema.js";
export type { PullRequestConfig, PullRequestMode } from "./schema.js";
export {
  BRANCH_FIELDS,
  DEFAULT_BRANCH_TEMPLATE,
  pullRequestBody,
  pullRequestBranch,
  pullRequestTitle,
} from "./pull-request-text.js";
export type { ChangedFile, PullRequestContext } from "./pull-request-text.js";
