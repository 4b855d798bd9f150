import { TerminalError } from "../../shared/errors.js";
import { condition, kustomizationSchema, type Kustomization } from "./flux-objects.js";
import { commitOfRevision } from "./flux-revision.js";
import { describeCondition, readyIsCurrent, short, type FollowedKind } from "./followed-kind.js";

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

/**
 * A Kustomization (kustomize.toolkit.fluxcd.io/v1) is done when `lastAppliedRevision` contains the commit with
 * Ready=True at the current generation and nothing reconciling, and failed when Ready=False with a failure reason
 * for an attempted revision that contains it (docs/testing.md, "Flux in the lab").
 */
export const kustomizationRules: FollowedKind<Kustomization> = {
  kind: "Kustomization",
  schema: kustomizationSchema,

  source: (ks) => ks.spec.sourceRef,

  check(ks, subject) {
    if (!ks.spec.suspend) return;
    const { name, namespace } = ks.metadata;
    throw new TerminalError(
      `${subject} is suspended, so Flux would not apply the change; resume it (flux resume kustomization ${name} -n ${namespace ?? "flux-system"})`,
    );
  },

  async verdict(ks, request, subject, source) {
    const ready = condition(ks, "Ready");
    if (!readyIsCurrent(ready, ks)) return undefined;
    const commit = short(request.commit);

    if (ready.status === "False" && ready.reason && FAILURE_REASONS.has(ready.reason)) {
      // The failure is about our commit when the attempted revision contains it; a missing path or a fetch
      // problem is reported before lastAttemptedRevision is written, so the source's artifact stands in.
      const revision = ks.status?.lastAttemptedRevision ?? (await source())?.status?.artifact?.revision;
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
    if (ks.status?.observedGeneration !== ks.metadata.generation) return undefined;
    if (ready.status !== "True" || reconciling || (healthy && healthy.status !== "True")) return undefined;
    return {
      kind: "healthy",
      revision: applied,
      message: `${subject} applied commit ${commit} (revision ${ks.status?.lastAppliedRevision}); it is Ready: ${ready.message ?? ready.reason ?? "True"}`,
    };
  },

  describe: (ks) =>
    [
      `Ready ${describeCondition(condition(ks, "Ready"))}`,
      `lastAppliedRevision ${ks.status?.lastAppliedRevision ?? "none"}`,
      `lastAttemptedRevision ${ks.status?.lastAttemptedRevision ?? "none"}`,
    ].join(", "),
};
