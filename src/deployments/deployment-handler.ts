import type { TaskContext, TaskHandler } from "../control-plane/task-connector.js";
import type { TriggeredEvent } from "../keptn/cloud-event.js";
import {
  deploymentTriggeredDataSchema,
  type DeploymentFinishedData,
  type DeploymentTriggeredData,
} from "../keptn/deployment-data.js";
import type { TaskFinish } from "../keptn/event-builders.js";
import type { ChangeSpec } from "../config/schema.js";
import { editFile, needsImage, type EditInput } from "../gitops-repo/editors/editors.js";
import type { ChangedFile, GitopsRepo } from "../gitops-repo/gitops-repo.js";
import { parseImageReference } from "../gitops-repo/image-reference.js";
import { renderTemplate } from "../gitops-repo/repo-path.js";
import { DeadlineExceededError, DeploymentFailedError, TerminalError } from "../shared/errors.js";
import { formatDuration } from "../shared/duration.js";
import { watcherKey, type SyncTarget, type SyncWatcher } from "../sync/sync-watcher.js";
import { deploymentCommitMessage, groupCommitMessage } from "./commit-message.js";
import type { PullRequestDelivery } from "./pull-request-delivery.js";
import type { Target, TargetFile, TargetResolver } from "./targets.js";

export interface DeploymentHandlerOptions {
  targets: TargetResolver;
  repo: GitopsRepo;
  /** One watcher per configured Argo CD server and Flux cluster, by `watcherKey(tool, name)`. */
  syncWatchers: ReadonlyMap<string, SyncWatcher>;
  /** Deadline for events that match no target (they are answered at once anyway). */
  fallbackTimeoutMs: number;
  /** `git.commitMessage`; the default message when absent. */
  commitMessage?: string;
  /** The review step of the targets whose repository has `pullRequest`. */
  pullRequests?: PullRequestDelivery;
}

const short = (sha: string) => sha.slice(0, 7);

/**
 * The use case: deploy through GitOps. Resolve the target, write the image into the repository (commit + push,
 * or nothing when it is already there), then wait until the GitOps tool has synced that commit and the app is
 * healthy.
 */
export class DeploymentHandler implements TaskHandler<DeploymentTriggeredData> {
  readonly task = "deployment";
  readonly dataSchema = deploymentTriggeredDataSchema;

  constructor(private readonly options: DeploymentHandlerOptions) {}

  timeoutMs(event: TriggeredEvent<DeploymentTriggeredData>): number {
    return this.targetOrUndefined(event)?.timeoutMs ?? this.options.fallbackTimeoutMs;
  }

  baseTaskData(event: TriggeredEvent<DeploymentTriggeredData>): Record<string, unknown> {
    const target = this.targetOrUndefined(event);
    const { deployment } = event.data;
    const uris = (templates: string[] | undefined, given: string[]) => {
      try {
        return templates ? templates.map((t) => renderTemplate(t, event.scope, "deployment URI")) : given;
      } catch {
        return given; // an unsafe name is reported by the deployment itself; the URIs fall back to the event's
      }
    };
    const data: Omit<DeploymentFinishedData, "gitCommit"> = {
      deploymentstrategy: deployment.deploymentstrategy || "direct",
      deploymentNames: target ? [target.deploy.application] : [],
      deploymentURIsLocal: uris(target?.uris?.local, deployment.deploymentURIsLocal),
      deploymentURIsPublic: uris(target?.uris?.public, deployment.deploymentURIsPublic),
    };
    return data;
  }

  async execute({
    event,
    logger,
    signal,
    deadline,
    progress,
    resumed,
  }: TaskContext<DeploymentTriggeredData>): Promise<TaskFinish> {
    const target = this.options.targets.resolve(event.scope);
    const input = editInputOf(event, target.files);
    const deploying = input.image?.reference ?? "new values";
    const watcher = this.options.syncWatchers.get(watcherKey(target.deploy.tool, target.deploy.server));
    if (!watcher) throw new Error(`no sync watcher for ${target.deploy.tool} ${target.deploy.server}`);
    const pullRequest = target.dryRun ? undefined : target.pullRequest;
    if (pullRequest) {
      if (!this.options.pullRequests) throw new Error("pull requests are configured but not wired");
      this.options.pullRequests.check(target);
    }

    // Literal objects with every key, not spreads: thousands wait at once, and a spread copy gets a hidden class
    // of its own each time (about 250 bytes).
    const syncTarget: SyncTarget = {
      application: target.deploy.application,
      appNamespace: target.deploy.appNamespace,
      kind: target.deploy.kind,
      deadline,
      signal,
      logger,
    };
    // Nothing is committed for a target the tool could never show the commit of (missing, suspended, ...).
    await watcher.check?.(syncTarget);

    // Carried on after a restart: the commit it made before, if it got that far, is found by its trailer.
    const own = resumed
      ? await this.options.repo.findDeploymentCommit(target.repository, event.id, pullRequest?.branch)
      : undefined;
    if (own) logger.info({ gitCommit: own }, "found the deployment's commit from before the restart");
    const change = own
      ? { commit: own, committed: true, files: [] }
      : await this.options.repo.applyChange({
          repository: target.repository,
          files: target.files.map(({ file, change }) => ({
            file,
            edit: (text: string) => editFile(text, file, change, input),
          })),
          message: (changed) =>
            deploymentCommitMessage(event, deploying, changed, this.options.commitMessage),
          // A pull request's commit goes to its own branch, alone; the others share commits in a burst.
          ...(pullRequest ? { pushTo: pullRequest.branch } : { groupMessage: groupCommitMessage }),
          ...(target.dryRun ? { dryRun: true } : {}),
          signal,
        });
    let gitCommit = change.commit;
    progress({ gitCommit });
    if (target.dryRun) return dryRunFinish(target, deploying, change.files, change.diff ?? "", gitCommit);
    const where = target.files.map((f) => f.file).join(", ");
    let wrote = own
      ? `Committed ${short(gitCommit)} before the service restarted`
      : change.committed
        ? `Committed ${describeChanges(change.files)} as ${short(gitCommit)}`
        : `${where} already ${target.files.length > 1 ? "hold" : "holds"} ${deploying}; deploying the current head ${short(gitCommit)}`;
    if (pullRequest && change.committed) {
      const delivery = await this.options.pullRequests!.deliver({
        event,
        target: { ...target, pullRequest },
        ...(input.image ? { image: input.image.reference } : {}),
        commit: gitCommit,
        files: change.files,
        deadline,
        signal,
        logger,
      });
      const opened = delivery.named;
      const pushed = own
        ? `Pushed ${short(gitCommit)} to branch ${pullRequest.branch} before the service restarted`
        : `Pushed ${describeChanges(change.files)} as ${short(gitCommit)} to branch ${pullRequest.branch}`;
      if (delivery.outcome === "opened") {
        return {
          status: "succeeded",
          result: "pass",
          message: `${pushed} and ${delivery.pullRequest.created ? "opened" : "updated"} ${opened} into ${target.repository.branch}. Not waiting for the merge (pullRequest mode open-only): merging it deploys the change.`,
          taskData: { gitCommit },
        };
      }
      gitCommit = delivery.commit;
      progress({ gitCommit });
      wrote = `${pushed}; ${opened} was merged into ${target.repository.branch} as ${short(gitCommit)}`;
    }
    logger.info(
      { gitCommit, committed: change.committed, application: target.deploy.application },
      "waiting for the GitOps tool",
    );

    try {
      const commit = gitCommit;
      const outcome = await watcher.waitForSync({
        application: syncTarget.application,
        appNamespace: syncTarget.appNamespace,
        kind: syncTarget.kind,
        deadline,
        signal,
        logger,
        commit,
        includes: (revision) => this.options.repo.includes(target.repository, commit, revision),
      });
      const message = `${wrote}. ${outcome.message}`;
      if (outcome.kind !== "healthy") throw new DeploymentFailedError(message, { taskData: { gitCommit } });
      return { status: "succeeded", result: "pass", message, taskData: { gitCommit } };
    } catch (error) {
      if (error instanceof DeadlineExceededError) {
        throw new DeadlineExceededError(
          `${wrote}, but the deployment did not finish within ${formatDuration(target.timeoutMs)}: ${error.message}`,
          {
            cause: error,
            taskData: { gitCommit },
          },
        );
      }
      if (error instanceof TerminalError && !error.taskData) {
        throw new TerminalError(`${wrote}, then: ${error.message}`, {
          cause: error,
          taskData: { gitCommit },
        });
      }
      throw error;
    }
  }

  private targetOrUndefined(event: TriggeredEvent<DeploymentTriggeredData>): Target | undefined {
    try {
      return this.options.targets.resolve(event.scope);
    } catch {
      return undefined;
    }
  }
}

/**
 * The answer to a dry run: pass, the head the change was made on, and the diff it would have committed. Nothing was
 * committed or pushed, and the GitOps tool was not asked for anything.
 */
function dryRunFinish(
  target: Target,
  deploying: string,
  changed: ChangedFile[],
  diff: string,
  head: string,
): TaskFinish {
  const on = `on branch ${target.repository.branch} of repository ${target.repository.name}`;
  const files = target.files.map((f) => f.file).join(", ");
  const message =
    changed.length === 0
      ? `Dry run: ${files} ${on} already ${target.files.length > 1 ? "hold" : "holds"} ${deploying} at ${short(head)}; a deployment would commit nothing. Nothing was committed or pushed.`
      : `Dry run: would commit ${describeChanges(changed)} ${on} on top of ${short(head)}. Nothing was committed or pushed, and ${target.deploy.application} was not synced.\n\n${diff.trimEnd()}`;
  return { status: "succeeded", result: "pass", message, taskData: { gitCommit: head } };
}

/** `image.tag: 1 -> 2 in a.yaml`, or `...in a.yaml; newTag: 1 -> 2 in b/kustomization.yaml`. */
function describeChanges(files: ChangedFile[]): string {
  return files.map((f) => `${f.changes.join(", ")} in ${f.file}`).join("; ");
}

/**
 * What the edits get: all of `configurationChange.values`, and the image from `values.image` as the Keptn CLI puts
 * it there. Only the change kinds that write an image need one; for the others an unusable image is left out.
 */
function editInputOf(event: TriggeredEvent<DeploymentTriggeredData>, files: TargetFile[]): EditInput {
  const values = event.data.configurationChange.values;
  const image = values["image"];
  if (!files.some(({ change }: { change: ChangeSpec }) => needsImage(change))) {
    try {
      return { values, ...(typeof image === "string" ? { image: parseImageReference(image) } : {}) };
    } catch {
      return { values };
    }
  }
  if (typeof image !== "string" || image.trim() === "") {
    throw new TerminalError(
      "the deployment.triggered event has no image: set configurationChange.values.image (e.g. keptn trigger delivery --image=docker.io/org/app:1.2.3)",
    );
  }
  return { image: parseImageReference(image), values };
}
