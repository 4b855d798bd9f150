import { TerminalError } from "../../shared/errors.js";
import { GitHubPullRequestHost } from "./github-pull-request-host.js";
import { GitLabPullRequestHost } from "./gitlab-pull-request-host.js";
import type { PullRequestHost, PullRequestProvider } from "./pull-request-host.js";
import { parseRepositoryUrl } from "./repository-url.js";
import type { RepositoryLocation } from "./repository-url.js";
import type { RequestPolicy } from "./request-policy.js";
import type { TokenSource } from "../gitops-repo.js";
import type { PullRequestConfig } from "./schema.js";

/** Which API a repository's pull requests go to, and where the repository is in it. */
export interface PullRequestTarget {
  provider: PullRequestProvider;
  apiUrl: string;
  /** `owner/repo` (GitHub), `group/subgroup/project` (GitLab). */
  path: string;
}

export interface HostDependencies {
  fetch?: typeof globalThis.fetch;
  policy?: RequestPolicy;
  requestTimeoutMs?: number;
}

interface ProviderEntry {
  /** Hosts that use this provider when `pullRequest.provider` is not given. */
  hosts: readonly string[];
  defaultApiUrl(location: RepositoryLocation): string;
  /** What is wrong with the repository path for this provider; undefined when it is fine. */
  pathProblem(path: string): string | undefined;
  create(
    repository: { name: string },
    target: PullRequestTarget,
    config: Pick<PullRequestConfig, "tokenHeader">,
    token: string | TokenSource,
    dependencies: HostDependencies,
  ): PullRequestHost;
}

/** The providers, one entry each: how they are recognised, where their API is, how a client is built. */
export const PULL_REQUEST_PROVIDERS: Record<PullRequestProvider, ProviderEntry> = {
  github: {
    hosts: ["github.com", "www.github.com"],
    defaultApiUrl: ({ host, origin }) =>
      host === "github.com" || host === "www.github.com"
        ? "https://api.github.com"
        : `${origin ?? `https://${host}`}/api/v3`,
    pathProblem: (path) =>
      /^[^/]+\/[^/]+$/.test(path)
        ? undefined
        : `a GitHub repository URL ends in <owner>/<repo>, not "${path}"`,
    create: (repository, target, _config, token, dependencies) => {
      const [owner = "", repo = ""] = target.path.split("/");
      return new GitHubPullRequestHost({
        repositoryName: repository.name,
        owner,
        repo,
        token,
        apiUrl: target.apiUrl,
        ...dependencies,
      });
    },
  },
  gitlab: {
    hosts: ["gitlab.com", "www.gitlab.com"],
    defaultApiUrl: ({ host, origin }) => `${origin ?? `https://${host}`}/api/v4`,
    pathProblem: (path) =>
      path.includes("/") ? undefined : `a GitLab repository URL ends in <namespace>/<project>, not "${path}"`,
    create: (repository, target, config, token, dependencies) =>
      new GitLabPullRequestHost({
        repositoryName: repository.name,
        projectPath: target.path,
        token,
        tokenHeader: config.tokenHeader,
        apiUrl: target.apiUrl,
        ...dependencies,
      }),
  },
};

/**
 * The provider and API of a repository: `pullRequest.provider` and `apiUrl` when given, else by host
 * (github.com → GitHub, gitlab.com → GitLab). Throws a TerminalError that says what to configure.
 */
export function choosePullRequestTarget(
  repository: { name: string; url: string },
  config: Pick<PullRequestConfig, "provider" | "apiUrl">,
): PullRequestTarget {
  const location = parseRepositoryUrl(repository.url);
  if (!location) {
    throw new TerminalError(
      `the URL of repository "${repository.name}" has no host and path to find its pull requests by`,
    );
  }
  const provider =
    config.provider ??
    (Object.keys(PULL_REQUEST_PROVIDERS) as PullRequestProvider[]).find((name) =>
      PULL_REQUEST_PROVIDERS[name].hosts.includes(location.host),
    );
  if (!provider) {
    throw new TerminalError(
      `cannot tell which API serves the pull requests of repository "${repository.name}" (host ${location.host}); ` +
        `set pullRequest.provider to github or gitlab, and pullRequest.apiUrl`,
    );
  }
  const entry = PULL_REQUEST_PROVIDERS[provider];
  const apiUrl = (config.apiUrl ?? entry.defaultApiUrl(location)).replace(/\/+$/, "");
  const path = withoutUrlRoot(location.path, apiUrl);
  const problem = entry.pathProblem(path);
  if (problem) throw new TerminalError(`${problem} (repository "${repository.name}")`);
  return { provider, apiUrl, path };
}

/** Builds the host client of a repository; does no I/O. */
export function createPullRequestHost(
  repository: { name: string; url: string },
  config: Pick<PullRequestConfig, "provider" | "apiUrl" | "tokenHeader">,
  token: string | TokenSource,
  dependencies: HostDependencies = {},
): PullRequestHost {
  const target = choosePullRequestTarget(repository, config);
  return PULL_REQUEST_PROVIDERS[target.provider].create(repository, target, config, token, dependencies);
}

/**
 * A self-managed host under a relative URL root (`https://example.com/gitlab/api/v4`) has clone URLs like
 * `https://example.com/gitlab/group/project.git`: the root is not part of the project path.
 */
function withoutUrlRoot(path: string, apiUrl: string): string {
  let root: string;
  try {
    root = new URL(apiUrl).pathname.replace(/\/api\/v\d+\/?$/, "").replace(/^\/+|\/+$/g, "");
  } catch {
    return path;
  }
  return root.length > 0 && path.startsWith(`${root}/`) ? path.slice(root.length + 1) : path;
}
