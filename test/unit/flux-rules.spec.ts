import { expect } from "chai";
import { TerminalError } from "../../src/shared/errors.js";
import { createLogger } from "../../src/shared/logger.js";
import { SecretRegistry } from "../../src/shared/secrets.js";
import type { FluxSource } from "../../src/sync/flux/flux-objects.js";
import { commitOfChartVersion, commitOfRevision } from "../../src/sync/flux/flux-revision.js";
import { helmReleaseRules } from "../../src/sync/flux/helm-release-rules.js";
import { kustomizationRules } from "../../src/sync/flux/kustomization-rules.js";
import type { SyncRequest } from "../../src/sync/sync-watcher.js";

// The done rules of each Flux kind, on the status shapes the lab recorded (docs/testing.md, and the Flux
// simulator's readme). The e2e scenarios run them against the simulator and the real controllers; these pin the
// versions in between that a tracker must not take for an answer.

const OLD = "1111111111111111111111111111111111111111";
const NEW = "abcdef0123456789abcdef0123456789abcdef01";

/** A request for NEW; `includes` knows only that NEW contains itself and OLD does not contain NEW. */
const request: SyncRequest = {
  application: "podtato-head-dev",
  appNamespace: "flux-system",
  commit: NEW,
  includes: async (revision) => NEW.startsWith(revision.toLowerCase()),
  deadline: Date.now() + 60_000,
  signal: new AbortController().signal,
  logger: createLogger({ level: "silent", secrets: new SecretRegistry() }),
};
const noSource = async (): Promise<FluxSource | undefined> => undefined;

const cond = (type: string, status: string, reason: string, message = "", observedGeneration = 2) => ({
  type,
  status,
  reason,
  message,
  observedGeneration,
});

describe("Flux done rules", () => {
  describe("revisions", () => {
    it("finds the commit in every revision form Flux writes, and nothing in others", () => {
      expect(commitOfRevision(`main@sha1:${NEW}`)).to.equal(NEW);
      expect(commitOfRevision(`refs/heads/main@sha1:${NEW}`)).to.equal(NEW);
      expect(commitOfRevision(`sha1:${NEW}`)).to.equal(NEW);
      expect(commitOfRevision(`main/${NEW}`)).to.equal(NEW);
      expect(commitOfRevision("0.1.0")).to.equal(undefined);
      expect(commitOfRevision(`latest@sha256:${"a".repeat(63)}`)).to.equal(undefined);
    });

    it("finds the abbreviated commit in a chart version built with reconcileStrategy Revision", () => {
      expect(commitOfChartVersion(`0.1.0+${NEW.slice(0, 12)}`)).to.equal(NEW.slice(0, 12));
      // With valuesFiles, source-controller adds the HelmChart's generation (pinned in the lab).
      expect(commitOfChartVersion(`0.1.0+${NEW.slice(0, 12)}.1`)).to.equal(NEW.slice(0, 12));
      expect(commitOfChartVersion("0.1.0+1")).to.equal(undefined);
      expect(commitOfChartVersion("0.1.0")).to.equal(undefined);
      expect(commitOfChartVersion("0.1.0+build.5")).to.equal(undefined);
    });
  });

  describe("Kustomization", () => {
    const ks = (status: Record<string, unknown>, generation = 2) => ({
      metadata: { name: "podtato-head-dev", namespace: "flux-system", generation },
      spec: { sourceRef: { kind: "GitRepository", name: "gitops" } },
      status,
    });
    const verdict = (object: ReturnType<typeof ks>, source = noSource) =>
      kustomizationRules.verdict(object, request, "Flux Kustomization flux-system/podtato-head-dev", source);

    it("is not done on Ready=True 'Applied revision: <new>' while lastAppliedRevision is still the old one", async () => {
      const object = ks({
        observedGeneration: 2,
        lastAttemptedRevision: `main@sha1:${NEW}`,
        lastAppliedRevision: `main@sha1:${OLD}`,
        conditions: [cond("Ready", "True", "ReconciliationSucceeded", `Applied revision: main@sha1:${NEW}`)],
      });
      expect(await verdict(object)).to.equal(undefined);
    });

    it("is not done while a health check runs (Reconciling=True), then done", async () => {
      const status = {
        observedGeneration: 2,
        lastAttemptedRevision: `main@sha1:${NEW}`,
        lastAppliedRevision: `main@sha1:${NEW}`,
        conditions: [
          cond("Reconciling", "True", "Progressing", "Running health checks"),
          cond("Ready", "True", "ReconciliationSucceeded", `Applied revision: main@sha1:${NEW}`),
        ],
      };
      expect(await verdict(ks(status))).to.equal(undefined);
      const done = await verdict(ks({ ...status, conditions: status.conditions.slice(1) }));
      expect(done).to.deep.include({ kind: "healthy", revision: NEW });
    });

    it("is not fooled by a Ready=True of the previous generation, nor by an older revision", async () => {
      const applied = {
        observedGeneration: 1,
        lastAppliedRevision: `main@sha1:${NEW}`,
        conditions: [cond("Ready", "True", "ReconciliationSucceeded", "", 1)],
      };
      expect(await verdict(ks(applied))).to.equal(undefined);
      const older = {
        observedGeneration: 2,
        lastAppliedRevision: `main@sha1:${OLD}`,
        conditions: [cond("Ready", "True", "ReconciliationSucceeded")],
      };
      expect(await verdict(ks(older))).to.equal(undefined);
    });

    it("fails on a failure reason for the attempted commit, not for an older one", async () => {
      const failed = (revision: string) =>
        ks({
          observedGeneration: 1,
          lastAttemptedRevision: `main@sha1:${revision}`,
          conditions: [cond("Ready", "False", "HealthCheckFailed", "health check failed after 30s")],
        });
      expect(await verdict(failed(OLD))).to.equal(undefined);
      expect(await verdict(failed(NEW))).to.deep.include({ kind: "sync-failed", revision: NEW });
    });

    it("fails on a missing path through the source's artifact, as lastAttemptedRevision is not written", async () => {
      const object = ks({
        observedGeneration: -1,
        conditions: [cond("Ready", "False", "ArtifactFailed", "kustomization path not found")],
      });
      const source = async () => ({
        metadata: { name: "gitops" },
        status: { artifact: { revision: `main@sha1:${NEW}` } },
      });
      expect(await verdict(object, source)).to.deep.include({ kind: "sync-failed", revision: NEW });
    });
  });

  describe("HelmRelease", () => {
    const chart = (reconcileStrategy?: string, kind = "GitRepository") => ({
      spec: {
        chart: "./flux-charts/podtato-head",
        sourceRef: { kind, name: "gitops" },
        ...(reconcileStrategy ? { reconcileStrategy } : {}),
      },
    });
    const hr = (
      status: Record<string, unknown>,
      spec: Record<string, unknown> = { chart: chart("Revision") },
    ) => ({
      metadata: { name: "podtato-head-helm-dev", namespace: "flux-system", generation: 2 },
      spec,
      status,
    });
    const subject = "Flux HelmRelease flux-system/podtato-head-helm-dev";
    const verdict = (object: ReturnType<typeof hr>) =>
      helmReleaseRules.verdict(object, request, subject, noSource);
    const version = (sha: string) => `0.1.0+${sha.slice(0, 12)}`;
    const released = (sha: string, conditions: unknown[]) => ({
      observedGeneration: 2,
      lastAttemptedRevision: version(sha),
      history: [{ chartVersion: version(sha), status: "deployed", version: 3 }],
      conditions,
    });

    it("is not done on Ready=True UpgradeSucceeded while Reconciling is still there, then done", async () => {
      const ready = cond("Ready", "True", "UpgradeSucceeded", "Helm upgrade succeeded");
      expect(await verdict(hr(released(NEW, [cond("Reconciling", "True", "Progressing"), ready])))).to.equal(
        undefined,
      );
      const done = await verdict(hr(released(NEW, [ready])));
      expect(done).to.deep.include({ kind: "healthy", revision: NEW.slice(0, 12) });
      expect(done?.message).to.include(`released commit ${NEW.slice(0, 7)} (chart version ${version(NEW)}`);
    });

    it("is not fooled by the previous release's Ready=True while the new chart is attempted", async () => {
      const object = hr({
        ...released(OLD, [cond("Ready", "True", "UpgradeSucceeded")]),
        lastAttemptedRevision: version(NEW),
      });
      expect(await verdict(object)).to.equal(undefined);
    });

    it("fails once helm-controller has stopped on a failed upgrade of the commit's chart", async () => {
      const failed = cond("Ready", "False", "UpgradeFailed", "Helm upgrade failed: forbidden");
      const attempt = {
        observedGeneration: 2,
        lastAttemptedRevision: version(NEW),
        history: [{ chartVersion: version(OLD), status: "deployed" }],
      };
      expect(
        await verdict(hr({ ...attempt, conditions: [cond("Reconciling", "True", "Progressing"), failed] })),
      ).to.equal(undefined);
      const stalled = cond("Stalled", "True", "RetriesExceeded", "Failed to upgrade after 1 attempt(s)");
      const outcome = await verdict(hr({ ...attempt, conditions: [stalled, failed] }));
      expect(outcome).to.deep.include({ kind: "sync-failed" });
      expect(outcome?.message).to.include("UpgradeFailed: Helm upgrade failed: forbidden");
    });

    it("refuses a chart that cannot name the commit, with what to set", () => {
      const refuse = (spec: Record<string, unknown>) => () => helmReleaseRules.check(hr({}, spec), subject);
      expect(refuse({ chart: chart() })).to.throw(
        TerminalError,
        "set spec.chart.spec.reconcileStrategy: Revision",
      );
      expect(refuse({ chart: chart("ChartVersion") })).to.throw(
        TerminalError,
        "reconcileStrategy ChartVersion",
      );
      expect(refuse({ chart: chart("Revision", "HelmRepository") })).to.throw(
        TerminalError,
        "deploy.kind: Kustomization",
      );
      expect(refuse({ chartRef: { kind: "OCIRepository", name: "podtato" } })).to.throw(
        TerminalError,
        "a chartRef",
      );
      expect(refuse({ chart: chart("Revision"), suspend: true })).to.throw(
        TerminalError,
        "flux resume helmrelease",
      );
    });
  });
});
