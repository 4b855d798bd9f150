import type { ZodType } from "zod";
import type { SyncOutcome, SyncRequest } from "../sync-watcher.js";
import type { FluxCondition, FluxSource, FluxSourceRef } from "./flux-objects.js";

/**
 * What the tracker needs to know about one kind of Flux object it follows to a verdict (a Kustomization, a
 * HelmRelease): how to parse it, which source to wake first, when it can never show the commit, and when it is done.
 * The kinds are listed in one place, `FOLLOWED_KINDS` in flux-sync-watcher.ts.
 */
export interface FollowedKind<T> {
  kind: "Kustomization" | "HelmRelease";
  schema: ZodType<T>;
  /** The source to ask to reconcile first, so that it fetches the commit; undefined when it cannot be asked. */
  source(object: T): FluxSourceRef | undefined;
  /** Throws a TerminalError when the object can never show a commit (suspended, a chart not from git, ...). */
  check(object: T, subject: string): void;
  /** The final state for the commit, or undefined while Flux is still on its way. */
  verdict(
    object: T,
    request: SyncRequest,
    subject: string,
    source: () => Promise<FluxSource | undefined>,
  ): Promise<SyncOutcome | undefined>;
  /** One line of what Flux showed, for timeout messages. */
  describe(object: T): string;
}

export const short = (sha: string | undefined) => (sha ? sha.slice(0, 7) : "none");

export function describeCondition(found: FluxCondition | undefined): string {
  if (!found) return "none";
  return `${found.status}/${found.reason ?? "?"}${found.message ? ` (${found.message})` : ""}`;
}

/**
 * Whether the Ready condition is about the object's current generation. It carries the generation it is about;
 * `status.observedGeneration` stays -1 until the first success (pinned in the lab), so a failure of an object that
 * never succeeded can only be read from the condition.
 */
export function readyIsCurrent(
  ready: FluxCondition | undefined,
  object: {
    metadata: { generation?: number | undefined };
    status?: { observedGeneration?: number | undefined } | undefined;
  },
): ready is FluxCondition {
  if (!ready) return false;
  return (ready.observedGeneration ?? object.status?.observedGeneration) === object.metadata.generation;
}
