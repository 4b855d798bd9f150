import { setTimeout as sleep } from "node:timers/promises";
import { RetryableError } from "../../shared/errors.js";
import { backoffDelay } from "../../shared/retry.js";

/** How one API call of a pull-request host is retried. */
export interface RequestPolicy {
  /** Attempts in all for 5xx and network errors, the first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Rate-limit answers waited out per call; the next one is thrown as `RateLimitedError`. */
  rateLimitRetries: number;
  /** The longest wait a rate limit may ask for; a longer one is thrown at once as `RateLimitedError`. */
  maxRateLimitWaitMs: number;
}

export const DEFAULT_REQUEST_POLICY: RequestPolicy = {
  attempts: 4,
  baseDelayMs: 500,
  maxDelayMs: 5_000,
  rateLimitRetries: 3,
  maxRateLimitWaitMs: 60_000,
};

/** The host asked to wait `waitMs` before the next call (GitHub's secondary/primary limits, GitLab's 429). */
export class RateLimitedError extends RetryableError {
  override name = "RateLimitedError";
  constructor(
    message: string,
    readonly waitMs: number,
  ) {
    super(message);
  }
}

/**
 * Runs one API call: a rate limit is waited out as the host told (bounded by `maxRateLimitWaitMs`, at most
 * `rateLimitRetries` times, ended by `signal`), other `RetryableError`s get backoff with jitter, bounded by
 * `attempts`; everything else is thrown at once.
 */
export async function callWithPolicy<T>(
  policy: RequestPolicy,
  operation: () => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  let failures = 0;
  let rateLimits = 0;
  for (;;) {
    signal?.throwIfAborted();
    try {
      return await operation();
    } catch (error) {
      if (error instanceof RateLimitedError) {
        rateLimits++;
        if (rateLimits > policy.rateLimitRetries || error.waitMs > policy.maxRateLimitWaitMs) throw error;
        await pause(error.waitMs, signal);
        continue;
      }
      if (!(error instanceof RetryableError)) throw error;
      failures++;
      if (failures >= policy.attempts) throw error;
      await pause(backoffDelay(policy, failures), signal);
    }
  }
}

/** Waits `ms`; an abort ends the wait with the signal's reason (the caller's "why"), not a bare AbortError. */
async function pause(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch (error) {
    throw signal?.aborted ? signal.reason : error;
  }
}

/** `Retry-After` as seconds (the form GitHub and GitLab send) or an HTTP date; undefined when absent or invalid. */
export function retryAfterMs(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value === null || value === undefined || value.trim() === "") return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
