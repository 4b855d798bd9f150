import { setTimeout as sleep } from "node:timers/promises";
import { RetryableError } from "./errors.js";

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  /** Delay before the second attempt; doubles after each failure. */
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Full jitter (delay drawn uniformly in [0, backoff]) so that racing writers spread out. */
export function backoffDelay(policy: RetryPolicy, failedAttempts: number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (failedAttempts - 1));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

/**
 * Runs `operation` until it succeeds, retrying only `RetryableError`s, at most `policy.attempts` times.
 * The last retryable error is rethrown as is; any other error ends the loop at once.
 */
export async function withRetry<T>(
  policy: RetryPolicy,
  operation: (attempt: number) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation(attempt);
    } catch (error) {
      if (!(error instanceof RetryableError) || attempt >= policy.attempts) throw error;
      await sleep(backoffDelay(policy, attempt), undefined, { signal });
    }
  }
}
