import { TerminalError } from "../../shared/errors.js";
import type { SyncOutcome, SyncRequest, SyncWatcher } from "../sync-watcher.js";
import { News } from "../news.js";
import { WaitLoop } from "../wait-loop.js";
import type { WakeUps } from "../wake-ups.js";
import type { FluxClient, FluxKind } from "./flux-client.js";
import { condition, type FluxCondition, type FluxSource, type Kustomization } from "./flux-objects.js";
import { commitOfRevision } from "./flux-revision.js";

export interface FluxSyncWatcherOptions {
  client: FluxClient;
  /** How often the Kustomization is read while waiting. */
  pollIntervalMs: number;
  /** Flux notifications received by the webhook: each makes the Kustomization be read at once. */
  wakeUps?: WakeUps;
}

/** Ready=False reasons that end a reconcile of the attempted revision (kustomize-controller; docs/testing.md). */
const FAILURE_REASONS = new Set([
  "HealthCheckFailed",
  "BuildFailed",
  "ReconciliationFailed",
  "ArtifactFailed",
  "PruneFailed",
  "InvalidCELExpression",
  "AccessDenied",
]);

const RECONCILABLE_SOURCES = new Set<string>(["GitRepository", "OCIRepository", "Bucket"]);

const short = (sha: string | undefined) => (sha ? sha.slice(0, 7) : "none");

function describeCondition(found: FluxCondition | undefined): string {
  if (!found) return "none";
  return `${found.status}/${found.reason ?? "?"}${found.message ? ` (${found.message})` : ""}`;
}

/** One line of what Flux showed, for timeout messages. */
function describe(ks: Kustomization, source: FluxSource | undefined): string {
  const parts = [
    `Ready ${describeCondition(condition(ks, "Ready"))}`,
    `lastAppliedRevision ${ks.status?.lastAppliedRevision ?? "none"}`,
    `lastAttemptedRevision ${ks.status?.lastAttemptedRevision ?? "none"}`,
  ];
  if (source) {
    parts.push(
      `source ${ks.spec.sourceRef.kind}/${ks.spec.sourceRef.name} at ${source.status?.artifact?.revision ?? "no artifact"}, Ready ${describeCondition(condition(source, "Ready"))}`,
    );
  }
  return parts.join(", ");
}

/**
 * Follows one Flux Kustomization until it has applied a revision that contains the pushed commit (docs/testing.md,
 * "Flux in the lab"): asks the source and then the Kustomization to reconcile now, then reads it until
 * `lastAppliedRevision` contains the commit with Ready=True at the current generation and nothing reconciling
 * (pass), Ready=False with a failure reason for a revision that contains it (fail), or the deadline passes.
 */
export class FluxSyncWatcher implements SyncWatcher {
  constructor(private readonly options: FluxSyncWatcherOptions) {}

  async waitForSync(request: SyncRequest): Promise<SyncOutcome> {
    const name = request.application;
    const namespace = request.appNamespace ?? "flux-system";
    const loop = new WaitLoop(request, `Flux Kustomization ${namespace}/${name}`, "Flux");

    const news = new News<never>();
    const unregister = this.options.wakeUps?.register("flux", namespace, name, () => news.poke());
    try {
      return await this.follow(request, loop, namespace, name, news);
    } finally {
      unregister?.();
    }
  }

  private async follow(
    request: SyncRequest,
    loop: WaitLoop,
    namespace: string,
    name: string,
    news: News<never>,
  ): Promise<SyncOutcome> {
    const { client } = this.options;
    let ks = await loop.call(() => client.kustomization(namespace, name));
    if (ks.spec.suspend) {
      throw new TerminalError(
        `Flux Kustomization ${namespace}/${name} is suspended, so Flux will not apply commit ${short(request.commit)}; resume it (flux resume kustomization ${name} -n ${namespace})`,
      );
    }
    const sourceRef = ks.spec.sourceRef;
    const sourceNamespace = sourceRef.namespace ?? namespace;
    // The source first, so that it fetches the commit; a new artifact wakes the Kustomization anyway.
    if (RECONCILABLE_SOURCES.has(sourceRef.kind)) {
      await loop.call(() =>
        client.requestReconcile(sourceRef.kind as FluxKind, sourceNamespace, sourceRef.name),
      );
    }
    await loop.call(() => client.requestReconcile("Kustomization", namespace, name));
    for (;;) {
      const source = await loop.call(() => client.source(sourceRef.kind, sourceNamespace, sourceRef.name));
      const verdict = await this.verdict(ks, source, request);
      if (verdict) return verdict;
      loop.lastSeen = describe(ks, source);
      await loop.pause(news.interval(this.options.pollIntervalMs), news.wake());
      ks = await loop.call(() => client.kustomization(namespace, name));
    }
  }

  private async verdict(
    ks: Kustomization,
    source: FluxSource | undefined,
    request: SyncRequest,
  ): Promise<SyncOutcome | undefined> {
    const ready = condition(ks, "Ready");
    const generation = ks.metadata.generation;
    // The Ready condition carries the generation it is about. status.observedGeneration stays -1 until the first
    // success (pinned in the lab), so a failure of a never-applied Kustomization can only be read from the condition.
    const readyGeneration = ready?.observedGeneration ?? ks.status?.observedGeneration;
    if (!ready || readyGeneration !== generation) return undefined;
    const commit = short(request.commit);
    const subject = `Flux Kustomization ${ks.metadata.namespace ?? request.appNamespace}/${ks.metadata.name}`;

    if (ready.status === "False" && ready.reason && FAILURE_REASONS.has(ready.reason)) {
      // The failure is about our commit when the attempted revision contains it; a missing path or a fetch
      // problem is reported before lastAttemptedRevision is written, so the source's artifact stands in.
      const revision = ks.status?.lastAttemptedRevision ?? source?.status?.artifact?.revision;
      const sha = commitOfRevision(revision);
      if (sha && (await request.includes(sha))) {
        return {
          kind: "sync-failed",
          revision: sha,
          message: `${subject} could not apply commit ${commit} (revision ${revision}): ${ready.reason}: ${ready.message ?? "no message from Flux"}`,
        };
      }
      return undefined;
    }
    const applied = commitOfRevision(ks.status?.lastAppliedRevision);
    if (!applied || !(await request.includes(applied))) return undefined;
    // Ready=True says "Applied revision: <new>" one version before lastAppliedRevision moves, and a health check
    // still running keeps Reconciling=True: all three must agree.
    const reconciling = condition(ks, "Reconciling")?.status === "True";
    const healthy = condition(ks, "Healthy");
    if (ks.status?.observedGeneration !== generation) return undefined;
    if (ready.status !== "True" || reconciling || (healthy && healthy.status !== "True")) return undefined;
    return {
      kind: "healthy",
      revision: applied,
      message: `${subject} applied commit ${commit} (revision ${ks.status?.lastAppliedRevision}); it is Ready: ${ready.message ?? ready.reason ?? "True"}`,
    };
  }
}
