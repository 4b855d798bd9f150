import type { AppConfig } from "../config/load-config.js";
import type { ChangeSpec } from "../config/schema.js";
import type { RepositoryRef, TokenSource } from "../gitops-repo/gitops-repo.js";
import { pullRequestBranch, type PullRequestMode } from "../gitops-repo/pull-requests/index.js";
import { renderTemplate } from "../gitops-repo/repo-path.js";
import { TerminalError } from "../shared/errors.js";

export interface Scope {
  project: string;
  stage: string;
  service: string;
}

/** Everything one deployment needs to know about where it goes, resolved from the configuration. */
export interface Target {
  index: number;
  repository: RepositoryRef;
  /** The files of the deployment with their change (`file` and `change`, or `files`), templates filled in. */
  files: TargetFile[];
  /**
   * The tool, the configured server (Argo CD) or cluster (Flux) by name, and the application or Flux object that
   * deploys the file, with its namespace and, for Flux, its kind.
   */
  deploy: {
    tool: "argocd" | "flux";
    server: string;
    application: string;
    appNamespace?: string;
    kind?: "Kustomization" | "HelmRelease";
  };
  timeoutMs: number;
  uris?: { local?: string[]; public?: string[] };
  /** Edit and report the diff, commit nothing (`targets[].dryRun`, else `git.dryRun`). */
  dryRun?: boolean;
  /** Deploy through a pull request: the repository's `pullRequest`, with the target's overrides. */
  pullRequest?: TargetPullRequest;
}

export interface TargetFile {
  file: string;
  change: ChangeSpec;
}

/** How one target's pull request is made and waited for. */
export interface TargetPullRequest {
  /** The branch of this project, stage and service. */
  branch: string;
  mode: PullRequestMode;
  mergeMethod: "merge" | "squash";
  pollIntervalMs: number;
}

/** The repository's own credentials as the git side takes them; a GitHub App's tokens come from `appTokens`. */
export type AppTokenSources = ReadonlyMap<string, TokenSource>;

function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${escaped.join(".*")}$`);
}

/** Maps a Keptn project/stage/service to a target: the first entry of `targets` whose patterns all match. */
export class TargetResolver {
  private readonly matchers: Array<{ test(scope: Scope): boolean }>;

  /**
   * @param appTokens the installation tokens of the repositories with `auth.githubApp`, by repository name
   *   (built once in app.ts, so that every deployment shares one token and its renewal).
   */
  constructor(
    private readonly config: AppConfig,
    private readonly appTokens: AppTokenSources = new Map(),
  ) {
    this.matchers = config.targets.map(({ match }) => {
      const project = globToRegExp(match.project);
      const stage = globToRegExp(match.stage);
      const service = globToRegExp(match.service);
      return {
        test: (s: Scope) => project.test(s.project) && stage.test(s.stage) && service.test(s.service),
      };
    });
  }

  /** The target for a scope, or undefined when none matches. */
  find(scope: Scope): number | undefined {
    const index = this.matchers.findIndex((m) => m.test(scope));
    return index < 0 ? undefined : index;
  }

  resolve(scope: Scope): Target {
    const index = this.find(scope);
    if (index === undefined) {
      throw new TerminalError(
        `no target is configured for project ${scope.project}, stage ${scope.stage}, service ${scope.service}; add an entry to "targets" whose match covers it`,
      );
    }
    const target = this.config.targets[index]!;
    const repository = this.config.repositories.find((r) => r.name === target.repository)!;
    const files = target.files ?? [{ file: target.file!, change: target.change! }];
    return {
      index,
      repository: {
        name: repository.name,
        url: repository.url,
        branch: repository.branch,
        ...this.authOf(repository),
        ...(repository.signing ? { signing: repository.signing } : {}),
      },
      files: files.map(({ file, change }) => ({
        file: renderTemplate(file, scope, `file template of targets.${index}`),
        change,
      })),
      deploy:
        target.deploy.tool === "argocd"
          ? {
              tool: "argocd",
              server: target.deploy.server,
              application: renderTemplate(
                target.deploy.application,
                scope,
                `application template of targets.${index}`,
              ),
              ...(target.deploy.appNamespace ? { appNamespace: target.deploy.appNamespace } : {}),
            }
          : {
              tool: "flux",
              server: target.deploy.cluster,
              application: renderTemplate(target.deploy.name, scope, `name template of targets.${index}`),
              appNamespace: target.deploy.namespace,
              kind: target.deploy.kind,
            },
      timeoutMs: target.timeout,
      ...(target.uris ? { uris: target.uris } : {}),
      ...((target.dryRun ?? this.config.git.dryRun) ? { dryRun: true } : {}),
      ...this.pullRequestOf(repository, target, scope),
    };
  }

  private authOf(repository: AppConfig["repositories"][number]): Pick<RepositoryRef, "auth"> {
    const { auth } = repository;
    if (!auth) return {};
    if (!("githubApp" in auth)) return { auth };
    const token = this.appTokens.get(repository.name);
    if (!token) throw new Error(`no GitHub App tokens were built for repository ${repository.name}`);
    return { auth: { username: "x-access-token", token, scheme: "basic" } };
  }

  private pullRequestOf(
    repository: AppConfig["repositories"][number],
    target: AppConfig["targets"][number],
    scope: Scope,
  ): { pullRequest?: TargetPullRequest } {
    const config = repository.pullRequest;
    if (!config || target.pullRequest === false) return {};
    const template = target.pullRequest?.branchTemplate ?? config.branchTemplate;
    return {
      pullRequest: {
        branch: pullRequestBranch(template, scope),
        mode: target.pullRequest?.mode ?? config.mode,
        mergeMethod: config.mergeMethod,
        pollIntervalMs: config.pollInterval,
      },
    };
  }
}
