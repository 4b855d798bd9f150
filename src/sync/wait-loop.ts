import { DeadlineExceededError, RetryableError, errorMessage } from "../shared/errors.js";
import { backoffDelay, type RetryPolicy } from "../shared/retry.js";
import type { Wake } from "./news.js";
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
   * DeadlineExceededError once the deadline has passed. An abort of the request's signal ends it with an
   * AbortError whose cause is the signal's reason. Both are thrown at the call when they are known then.
   */
  pause(ms: number, wake?: Wake): Promise<void> {
    const left = this.request.deadline - Date.now();
    if (left <= 0) {
      throw new DeadlineExceededError(
        this.request.commit
          ? `${this.subject} did not finish syncing commit ${this.request.commit.slice(0, 7)} in time; last seen: ${this.lastSeen}`
          : `${this.subject} could not be read in time; last seen: ${this.lastSeen}`,
      );
    }
    const { signal } = this.request;
    if (signal.aborted) throw abortError(signal);
    // A timer, one listener and the wake's function: no AbortSignal.any per pause (it keeps a weak reference in
    // the task's signal for every pause, and thousands of deployments pause many times each). Not an async
    // function: thousands wait here at once, and each async frame costs its own generator and promise.
    return new Promise<void>((resolve, reject) => {
      const end = (error?: Error) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        wake?.clear();
        if (error) reject(error);
        else resolve();
      };
      const onAbort = () => end(abortError(signal));
      const timer = setTimeout(end, Math.min(ms, left));
      signal.addEventListener("abort", onAbort, { once: true });
      wake?.onFire(end);
    });
  }
}

function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error("The operation was aborted", { cause: signal.reason }), {
    name: "AbortError",
    code: "ABORT_ERR",
  });
}
