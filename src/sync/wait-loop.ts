import { setTimeout as sleep } from "node:timers/promises";
import { DeadlineExceededError, RetryableError, errorMessage } from "../shared/errors.js";
import { backoffDelay, type RetryPolicy } from "../shared/retry.js";
import type { SyncTarget } from "./sync-watcher.js";

const TRANSIENT_BACKOFF: RetryPolicy = { attempts: 0, baseDelayMs: 250, maxDelayMs: 5_000 };

/**
 * The waiting part every GitOps tool adapter shares: calls to the tool that ride out transient failures, pauses
 * that end at the request's deadline, and a timeout message that says what the tool showed last.
 */
export class WaitLoop {
  /** What the tool showed last, in one line; the timeout message ends with it. */
  lastSeen: string;

  constructor(
    /** With the commit while waiting for it; without it for the check before the commit. */
    private readonly request: SyncTarget & { commit?: string },
    /** e.g. "Argo CD application carts-dev" */
    private readonly subject: string,
    /** e.g. "Argo CD" */
    private readonly tool: string,
  ) {
    this.lastSeen = `no answer from ${tool} yet`;
  }

  /** Calls the tool, retrying transient failures (5xx, network, a sync already running) until the deadline. */
  async call<T>(call: () => Promise<T>): Promise<T> {
    for (let failures = 1; ; failures++) {
      try {
        return await call();
      } catch (error) {
        if (!(error instanceof RetryableError)) throw error;
        this.lastSeen = errorMessage(error);
        this.request.logger.warn(
          { application: this.request.application, reason: errorMessage(error) },
          `${this.tool} call failed; retrying`,
        );
        await this.pause(backoffDelay(TRANSIENT_BACKOFF, failures));
      }
    }
  }

  /**
   * Waits `ms`, or less when `wake` fires (news from a watch stream), or ends the wait with a
   * DeadlineExceededError once the deadline has passed.
   */
  async pause(ms: number, wake?: AbortSignal): Promise<void> {
    const left = this.request.deadline - Date.now();
    if (left <= 0) {
      throw new DeadlineExceededError(
        this.request.commit
          ? `${this.subject} did not finish syncing commit ${this.request.commit.slice(0, 7)} in time; last seen: ${this.lastSeen}`
          : `${this.subject} could not be read in time; last seen: ${this.lastSeen}`,
      );
    }
    const signal = wake ? AbortSignal.any([this.request.signal, wake]) : this.request.signal;
    try {
      await sleep(Math.min(ms, left), undefined, { signal });
    } catch (error) {
      if (this.request.signal.aborted || !wake?.aborted) throw error;
    }
  }
}
