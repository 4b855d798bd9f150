import type { AppConfig } from "../config/load-config.js";
import type { ChangeSpec } from "../config/schema.js";
import type { RepositoryRef } from "../gitops-repo/gitops-repo.js";
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
  file: string;
  change: ChangeSpec;
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
}

function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${escaped.join(".*")}$`);
}

/** Maps a Keptn project/stage/service to a target: the first entry of `targets` whose patterns all match. */
export class TargetResolver {
  private readonly matchers: Array<{ test(scope: Scope): boolean }>;

  constructor(private readonly config: AppConfig) {
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
    return {
      index,
      repository: {
        name: repository.name,
        url: repository.url,
        branch: repository.branch,
        ...(repository.auth ? { auth: repository.auth } : {}),
      },
      file: renderTemplate(target.file, scope, `file template of targets.${index}`),
      change: target.change,
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
    };
  }
}
