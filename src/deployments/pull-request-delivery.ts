import { setTimeout as sleep } from "node:timers/promises";
import type { TriggeredEvent } from "../keptn/cloud-event.js";
import type { ChangedFile } from "../gitops-repo/gitops-repo.js";
import {
  pullRequestBody,
  pullRequestTitle,
  type OpenedPullRequest,
  type PullRequestHost,
  type PullRequestProvider,
  type PullRequestStatus,
} from "../gitops-repo/pull-requests/index.js";
import {
  DeadlineExceededError,
  DeploymentFailedError,
  RetryableError,
  TerminalError,
  errorMessage,
} from "../shared/errors.js";
import { formatDuration } from "../shared/duration.js";
import type { Logger } from "../shared/logger.js";
import type { Target, TargetPullRequest } from "./targets.js";

/** What a deployment through a pull request came to: opened (open-only), or merged into the target's branch. */
export type Delivery = { pullRequest: OpenedPullRequest; named: string } & (
  { outcome: "opened" } | { outcome: "merged"; commit: string }
);

export interface DeliveryRequest {
  event: TriggeredEvent<unknown>;
  target: Target & { pullRequest: TargetPullRequest };
  /** The image Keptn asked for, when the event has one. */
  image?: string;
  /** The commit pushed to the pull request's branch, and what it changed. */
  commit: string;
  files: ChangedFile[];
  deadline: number;
  signal: AbortSignal;
  logger: Logger;
}

export interface PullRequestDeliveryOptions {
  /** The host of each repository with `pullRequest`, by repository name. */
  hosts: ReadonlyMap<string, PullRequestHost>;
  /** `keptn.bridgeUrl`: the Keptn context in the body links to the sequence. */
  bridgeUrl?: string;
}

const short = (sha: string) => sha.slice(0, 7);

/**
 * The review step of a deployment: open (or update) the pull request of the target's branch, then, by mode, stop
 * there (`open-only`), or wait until it is merged (`wait-for-merge`; `auto-merge` first asks the host to merge when
 * the checks pass). "Not merged yet" is a pause, not an error; closed without merging fails the deployment, and so
 * does a newer deployment of the same service replacing this one's commit on the branch.
 */
export class PullRequestDelivery {
  constructor(private readonly options: PullRequestDeliveryOptions) {}

  /** Refuses, before anything is committed, a target whose pull requests cannot be made as configured. */
  check(target: Target): void {
    if (!target.pullRequest) return;
    const host = this.hostOf(target);
    if (target.pullRequest.mode === "auto-merge" && !host.supportsAutoMerge) {
      throw new TerminalError(
        `pull requests of repository "${target.repository.name}" are on ${host.provider}, whose REST API cannot turn on auto-merge; use mode "wait-for-merge" (with auto-merge enabled in the repository's settings) or "open-only"`,
      );
    }
  }

  async deliver(request: DeliveryRequest): Promise<Delivery> {
    const { target, commit, signal } = request;
    const host = this.hostOf(target);
    const { branch, mode } = target.pullRequest;
    const context = {
      project: request.event.scope.project,
      stage: request.event.scope.stage,
      service: request.event.scope.service,
      ...(request.image ? { image: request.image } : {}),
      shkeptncontext: request.event.shkeptncontext,
      triggeredId: request.event.id,
      files: request.files,
      ...(request.event.scope.labels ? { labels: request.event.scope.labels } : {}),
      ...(this.options.bridgeUrl ? { bridgeUrl: this.options.bridgeUrl } : {}),
      mode,
    };
    let opened: OpenedPullRequest;
    try {
      opened = await host.ensurePullRequest(
        {
          branch,
          base: target.repository.branch,
          title: pullRequestTitle(context),
          body: pullRequestBody(context),
        },
        signal,
      );
    } catch (error) {
      throw this.rewrap(
        error,
        `Pushed ${short(commit)} to branch ${branch}, but could not open its pull request: ${errorMessage(error)}`,
      );
    }
    const named = describe(host.provider, opened);
    request.logger.info(
      { pullRequest: opened.number, url: opened.url, created: opened.created, branch, commit },
      opened.created ? "opened pull request" : "updated the open pull request",
    );
    if (mode === "open-only") return { outcome: "opened", pullRequest: opened, named };
    if (mode === "auto-merge") {
      const asked = await host
        .enableAutoMerge(opened.number, { method: target.pullRequest.mergeMethod, sha: commit }, signal)
        .catch((error: unknown) => {
          throw this.rewrap(error, `${named}: could not turn on auto-merge: ${errorMessage(error)}`);
        });
      if (asked.outcome === "merged")
        return { outcome: "merged", pullRequest: opened, named, commit: asked.commit };
      if (asked.outcome === "not-mergeable") {
        throw new DeploymentFailedError(`${named} cannot be merged: ${asked.reason}`, {
          taskData: { gitCommit: commit },
        });
      }
      if (asked.outcome === "head-moved") throw superseded(named, commit, undefined);
    }
    const mergeCommit = await this.waitForMerge(host, opened, named, request);
    return { outcome: "merged", pullRequest: opened, named, commit: mergeCommit };
  }

  /** Reads the pull request every `pollInterval` until it is merged (its merge commit), closed, or replaced. */
  private async waitForMerge(
    host: PullRequestHost,
    opened: OpenedPullRequest,
    named: string,
    { commit, deadline, signal, logger, target }: DeliveryRequest,
  ): Promise<string> {
    let lastSeen = "open";
    for (;;) {
      let status: PullRequestStatus | undefined;
      try {
        status = await host.get(opened.number, signal);
      } catch (error) {
        if (!(error instanceof RetryableError)) throw this.rewrap(error, `${named}: ${errorMessage(error)}`);
        // Rate limits and outages beyond the host's own retries: keep waiting, the deadline ends it.
        lastSeen = `not readable (${errorMessage(error)})`;
        logger.warn(
          { pullRequest: opened.number, reason: errorMessage(error) },
          "pull request could not be read",
        );
      }
      if (status) {
        if (status.headSha && status.headSha !== commit) throw superseded(named, commit, status.headSha);
        if (status.state === "merged") {
          if (!status.mergeCommit)
            throw new TerminalError(`${named} is merged, but the host names no merge commit`);
          logger.info({ pullRequest: opened.number, mergeCommit: status.mergeCommit }, "pull request merged");
          return status.mergeCommit;
        }
        if (status.state === "closed") {
          throw new DeploymentFailedError(
            `${named} was closed without merging; ${short(commit)} was not deployed`,
            { taskData: { gitCommit: commit } },
          );
        }
        lastSeen = status.state;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new DeadlineExceededError(
          `${named} was not merged within ${formatDuration(target.timeoutMs)} (last seen: ${lastSeen}); it stays open`,
          { taskData: { gitCommit: commit } },
        );
      }
      await sleep(Math.min(target.pullRequest.pollIntervalMs, left), undefined, { signal });
    }
  }

  private hostOf(target: Target): PullRequestHost {
    const host = this.options.hosts.get(target.repository.name);
    if (!host) throw new Error(`no pull-request host was built for repository ${target.repository.name}`);
    return host;
  }

  /** The same kind of failure with what was being done in front. */
  private rewrap(error: unknown, message: string): Error {
    if (error instanceof RetryableError) return new RetryableError(message, { cause: error });
    if (error instanceof TerminalError || !(error instanceof Error))
      return new TerminalError(message, { cause: error });
    return error;
  }
}

/** `pull request #12 (https://...)` on GitHub, `merge request !12 (https://...)` on GitLab. */
function describe(provider: PullRequestProvider, pullRequest: OpenedPullRequest): string {
  return provider === "gitlab"
    ? `merge request !${pullRequest.number} (${pullRequest.url})`
    : `pull request #${pullRequest.number} (${pullRequest.url})`;
}

function superseded(named: string, commit: string, head: string | undefined): DeploymentFailedError {
  return new DeploymentFailedError(
    `${named} no longer holds ${short(commit)}: a newer deployment of the same service replaced it${head ? ` with ${short(head)}` : ""}, so this one will not be deployed`,
    { taskData: { gitCommit: commit } },
  );
}
