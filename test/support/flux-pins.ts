// What the real Flux controllers write, one entry per version a watch sees, pinned by the lab
// (test/lab/flux.real.spec.ts, test/lab/helm-release.real.spec.ts) and held against the Flux simulator
// (flux-simulator.spec.ts) from this one place, so the two cannot drift apart.

/** One Kustomization version, as the pins compare it: `<status>/<reason>` of each condition, or "-". */
export interface KustomizationStep {
  ready: string;
  reconciling: string;
  healthy: string;
  lastAttemptedRevision: string | undefined;
  lastAppliedRevision: string | undefined;
}

/**
 * kustomize-controller v1.9.6 applying a new revision, after the version that still shows the old one applied.
 */
export function kustomizationApplySteps(
  oldRevision: string | undefined,
  revision: string,
): KustomizationStep[] {
  const step = (
    ready: string,
    reconciling: string,
    lastAttemptedRevision: string | undefined,
    lastAppliedRevision: string | undefined,
  ): KustomizationStep => ({ ready, reconciling, healthy: "-", lastAttemptedRevision, lastAppliedRevision });
  return [
    // Fetching the artifact: the revision is only in the Reconciling message so far.
    step("Unknown/Progressing", "True/Progressing", oldRevision, oldRevision),
    // Artifact downloaded: lastAttemptedRevision moves first.
    step("Unknown/Progressing", "True/Progressing", revision, oldRevision),
    // Conditions are patched before the other status fields (fluxcd/pkg runtime/patch): for one version
    // Ready=True says "Applied revision: <new>" while lastAppliedRevision is still the old one.
    step("True/ReconciliationSucceeded", "-", revision, oldRevision),
    step("True/ReconciliationSucceeded", "-", revision, revision),
  ];
}

/** The Reconciling messages of that reconcile, in order. */
export function kustomizationReconcilingMessages(revision: string): string[] {
  return ["Fetching manifests", "Building manifests", "Detecting drift"].map(
    (what) => `${what} for revision ${revision} with a timeout of 1m0s`,
  );
}

/** One HelmRelease version, as the pins compare it. */
export interface HelmReleaseStep {
  /** `<status>/<reason>` of Ready */
  ready: string;
  /** the Reconciling message, or "-" */
  reconciling: string;
  lastAttemptedRevision: string | undefined;
  /** `<status> v<version>` of each history entry, newest first */
  history: string | undefined;
}

/**
 * An upgrade to a new chart version after an install: Ready=True of the previous release stands through
 * "Fulfilling prerequisites"; Ready=True/UpgradeSucceeded comes before the history, and Reconciling goes last.
 */
export function helmUpgradeSteps(old: string | undefined, chartVersion: string): HelmReleaseStep[] {
  const running = "Running 'upgrade' action with timeout of 5m0s";
  const step = (
    ready: string,
    reconciling: string,
    lastAttemptedRevision: string | undefined,
    history: string,
  ): HelmReleaseStep => ({ ready, reconciling, lastAttemptedRevision, history });
  return [
    step("True/InstallSucceeded", "Fulfilling prerequisites", old, "deployed v1"),
    step("Unknown/Progressing", running, old, "deployed v1"),
    step("Unknown/Progressing", running, chartVersion, "deployed v1"),
    step("True/UpgradeSucceeded", running, chartVersion, "deployed v1"),
    step("True/UpgradeSucceeded", running, chartVersion, "deployed v2, superseded v1"),
    step("True/UpgradeSucceeded", "-", chartVersion, "deployed v2, superseded v1"),
  ];
}
