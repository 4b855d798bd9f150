import { TerminalError } from "../../shared/errors.js";
import { condition, helmReleaseSchema, type HelmRelease } from "./flux-objects.js";
import { commitOfChartVersion } from "./flux-revision.js";
import { describeCondition, readyIsCurrent, short, type FollowedKind } from "./followed-kind.js";

/** Ready=False reasons of helm-controller (helm.toolkit.fluxcd.io/v2) that end a release of the attempted chart. */
const FAILURE_REASONS = new Set([
  "InstallFailed",
  "UpgradeFailed",
  "TestFailed",
  "RollbackSucceeded",
  "RollbackFailed",
  "UninstallSucceeded",
  "UninstallFailed",
  "ArtifactFailed",
  "InitFailed",
  "GetLastReleaseFailed",
]);

/**
 * A HelmRelease (helm.toolkit.fluxcd.io/v2) whose chart source-controller builds from the GitOps repository with
 * `reconcileStrategy: Revision`, so that the chart version is `<version>+<first 12 hex of the commit>[.<n>]` (the only
 * place a HelmRelease names a commit; pinned in the lab). Done when the newest release in `history` is `deployed`
 * at a chart version whose commit contains ours, it is the one last attempted, Ready=True at the current generation
 * and nothing reconciling: helm-controller writes Ready=True while Reconciling is still there. Failed when Ready=False
 * with a failure reason for an attempted chart version that contains the commit, once helm-controller has stopped
 * (Stalled, or no longer Reconciling): a remediation with retries may still upgrade again.
 */
export const helmReleaseRules: FollowedKind<HelmRelease> = {
  kind: "HelmRelease",
  schema: helmReleaseSchema,

  source(hr) {
    const sourceRef = hr.spec.chart?.spec.sourceRef;
    return sourceRef?.kind === "GitRepository" ? sourceRef : undefined;
  },

  check(hr, subject) {
    const { name, namespace } = hr.metadata;
    if (hr.spec.suspend) {
      throw new TerminalError(
        `${subject} is suspended, so Flux would not release the change; resume it (flux resume helmrelease ${name} -n ${namespace ?? "flux-system"})`,
      );
    }
    const chart = hr.spec.chart?.spec;
    if (!chart || chart.sourceRef.kind !== "GitRepository") {
      const from = chart ? `${chart.sourceRef.kind} ${chart.sourceRef.name}` : "a chartRef";
      throw new TerminalError(
        `${subject} takes its chart from ${from}, not from the GitOps repository, so no chart version can name a commit; follow the Kustomization that applies the HelmRelease instead (deploy.kind: Kustomization, with wait: true)`,
      );
    }
    if (chart.reconcileStrategy !== "Revision") {
      throw new TerminalError(
        `${subject} builds its chart from GitRepository ${chart.sourceRef.name} with reconcileStrategy ${chart.reconcileStrategy ?? "ChartVersion"}, so the chart version does not change with a commit and cannot name one; set spec.chart.spec.reconcileStrategy: Revision`,
      );
    }
  },

  async verdict(hr, request, subject) {
    const ready = condition(hr, "Ready");
    if (!readyIsCurrent(ready, hr)) return undefined;
    const commit = short(request.commit);
    const reconciling = condition(hr, "Reconciling")?.status === "True";
    const attempted = hr.status?.lastAttemptedRevision;

    if (ready.status === "False" && ready.reason && FAILURE_REASONS.has(ready.reason)) {
      const stalled = condition(hr, "Stalled")?.status === "True";
      const sha = commitOfChartVersion(attempted);
      if ((stalled || !reconciling) && sha && (await request.includes(sha))) {
        return {
          kind: "sync-failed",
          revision: sha,
          message: `${subject} could not release commit ${commit} (chart version ${attempted}): ${ready.reason}: ${ready.message ?? "no message from Flux"}`,
        };
      }
      return undefined;
    }
    const latest = hr.status?.history?.[0];
    const released = commitOfChartVersion(latest?.chartVersion);
    if (latest?.status !== "deployed" || !released || !(await request.includes(released))) return undefined;
    if (attempted !== latest.chartVersion || hr.status?.observedGeneration !== hr.metadata.generation) {
      return undefined;
    }
    if (ready.status !== "True" || reconciling) return undefined;
    return {
      kind: "healthy",
      revision: released,
      message: `${subject} released commit ${commit} (chart version ${latest.chartVersion}${latest.version ? `, release v${latest.version}` : ""}); it is Ready: ${ready.message ?? ready.reason ?? "True"}`,
    };
  },

  describe(hr) {
    const latest = hr.status?.history?.[0];
    return [
      `Ready ${describeCondition(condition(hr, "Ready"))}`,
      `lastAttemptedRevision ${hr.status?.lastAttemptedRevision ?? "none"}`,
      `last release ${latest ? `${latest.chartVersion ?? "?"} ${latest.status ?? "?"}` : "none"}`,
    ].join(", ");
  },
};
