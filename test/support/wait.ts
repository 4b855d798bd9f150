import type { NatsConnection, Subscription } from "nats";
import { setTimeout as delay } from "node:timers/promises";

export interface WaitForOptions {
  timeoutMs: number;
  /** Pause between two probes; default 20 ms. */
  intervalMs?: number;
  /** Ends the timeout message: "timed out after 500ms waiting for <what>". */
  what: string;
}

/**
 * Polls `probe` until it returns a value, and resolves with that value.
 *
 * `undefined` and `false` both mean "not yet", so `() => list.length > 0` works as a probe. A probe that throws
 * also counts as "not yet" (a refused connection is the usual case); the last error becomes the `cause` of the
 * timeout error, so it is not lost.
 */
export async function waitFor<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  opts: WaitForOptions,
): Promise<Exclude<T, false>> {
  const intervalMs = opts.intervalMs ?? 20;
  const deadline = Date.now() + opts.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value as Exclude<T, false>;
    } catch (error) {
      lastError = error;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      throw new Error(
        `timed out after ${opts.timeoutMs}ms waiting for ${opts.what}`,
        lastError === undefined ? undefined : { cause: lastError },
      );
    }
    await delay(Math.min(intervalMs, remaining));
  }
}

/** Collects the JSON bodies of every message on one NATS subject (wildcards allowed). */
export interface EventCollector {
  /** JSON-decoded bodies in arrival order; a body that is not JSON is kept as its text. */
  readonly events: unknown[];
  /** Subject of each entry of `events`, same index. */
  readonly subjects: string[];
  /** Resolves with the first event, already received or future, that matches; rejects after `timeoutMs`. */
  waitFor<T>(predicate: (event: unknown) => event is T, timeoutMs: number, what: string): Promise<T>;
  waitFor(predicate: (event: unknown) => boolean, timeoutMs: number, what: string): Promise<unknown>;
  /** Unsubscribes and rejects the waits still pending. Idempotent. */
  close(): Promise<void>;
}

interface PendingWait {
  predicate: (event: unknown) => boolean;
  resolve: (event: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Subscribes to `subject` and collects what arrives. The promise resolves once the server has registered the
 * subscription (after a flush), so a message published by another connection afterwards cannot be missed.
 */
export async function subscribeCollector(nc: NatsConnection, subject: string): Promise<EventCollector> {
  const events: unknown[] = [];
  const subjects: string[] = [];
  const pending = new Set<PendingWait>();
  let closed = false;

  const settle = (wait: PendingWait, event: unknown): void => {
    clearTimeout(wait.timer);
    pending.delete(wait);
    wait.resolve(event);
  };

  const subscription: Subscription = nc.subscribe(subject, {
    callback: (error, msg) => {
      if (error) return; // the subscription ends; pending waits will time out with the events seen so far
      const text = msg.string();
      let event: unknown;
      try {
        event = JSON.parse(text);
      } catch {
        event = text;
      }
      events.push(event);
      subjects.push(msg.subject);
      for (const wait of [...pending]) {
        if (matches(wait.predicate, event)) settle(wait, event);
      }
    },
  });
  await nc.flush();

  function waitForEvent(predicate: (event: unknown) => boolean, timeoutMs: number, what: string) {
    const seen = events.find((event) => matches(predicate, event));
    if (seen !== undefined) return Promise.resolve(seen);
    if (closed)
      return Promise.reject(new Error(`collector on "${subject}" is closed; cannot wait for ${what}`));
    return new Promise<unknown>((resolve, reject) => {
      const wait: PendingWait = {
        predicate,
        resolve,
        reject,
        timer: setTimeout(() => {
          pending.delete(wait);
          reject(
            new Error(
              `timed out after ${timeoutMs}ms waiting for ${what} on "${subject}"; ${describe(events, subjects)}`,
            ),
          );
        }, timeoutMs),
      };
      pending.add(wait);
    });
  }

  return {
    events,
    subjects,
    waitFor: waitForEvent as EventCollector["waitFor"],
    async close() {
      if (closed) return;
      closed = true;
      for (const wait of [...pending]) {
        clearTimeout(wait.timer);
        pending.delete(wait);
        wait.reject(new Error(`collector on "${subject}" closed while waiting`));
      }
      if (!subscription.isClosed()) subscription.unsubscribe();
    },
  };
}

function matches(predicate: (event: unknown) => boolean, event: unknown): boolean {
  try {
    return predicate(event);
  } catch {
    return false; // a predicate reading a field of an unexpected shape simply does not match
  }
}

/** "received 2 event(s): sh.keptn.event.deployment.started, ..." – the first thing to look at after a timeout. */
function describe(events: unknown[], subjects: string[]): string {
  if (events.length === 0) return "received no events";
  const kinds = events.map((event, i) => {
    const type = typeof event === "object" && event !== null && "type" in event ? event.type : undefined;
    return typeof type === "string" ? type : (subjects[i] ?? "?");
  });
  return `received ${events.length} event(s): ${kinds.join(", ")}`;
}
