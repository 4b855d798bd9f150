// What the real helm-controller v1.4.3 writes, one entry per version a watch sees, pinned by the lab
// (test/lab/helm-release.real.spec.ts) and held against the Flux simulator (flux-simulator.spec.ts) from this one
// place, so the two cannot drift apart.

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
