import { expect } from "chai";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FLUX_HELM_RELEASES } from "../e2e/flux-backend.js";
import { helmReleaseScenarios } from "../e2e/helm-release-scenarios.js";
import { DeploymentWorld, fluxFiles } from "../e2e/world.js";
import { GitHttpServer } from "../support/git-http-server.js";
import { commitToBare, createGitopsFixture, gitLog, type GitopsFixture } from "../support/gitops-fixture.js";
import { waitFor } from "../support/wait.js";
import {
  FLUX_HELM_BINARY,
  FLUX_LAB_BINARIES,
  FluxLab,
  fluxCondition,
  fluxLabBackend,
  type HelmReleaseObject,
} from "./flux-lab.js";
import { KubeLab, SYNCFAIL_POLICY } from "./kube-lab.js";
import { requireLabBinaries } from "./lab-paths.js";
import { helmUpgradeSteps } from "../support/flux-pins.js";

// The HelmRelease scenarios of test/e2e/helm-release.spec.ts against the real source-controller and helm-controller
// v1.4.3 of the lab. The HelmRelease `podtato-head-helm-wait` waits for its Deployment on upgrades, which never
// becomes ready without nodes: the timeout scenario's project times out after 20 s, long before Helm's 5 min.
helmReleaseScenarios({
  backend: "real Flux (lab)",
  testTimeoutMs: 120_000,
  slowTimeout: "20s",
  startWorld: () =>
    DeploymentWorld.start({
      flux: fluxLabBackend({ helm: true }),
      slowTimeout: "20s",
      answerTimeoutMs: 90_000,
      servicePollIntervalMs: 250,
    }),
});

// What the real helm-controller writes, pinned with the expectations test/simulators/flux/flux-simulator.spec.ts
// holds the simulator to (docs/testing.md "HelmRelease in the lab"). When one fails here, fix the simulator too.
describe("Flux in the lab: what the real helm-controller v1.4.3 writes", function () {
  this.timeout(120_000);
  const [dev, , pinned] = FLUX_HELM_RELEASES;
  const TOKEN = "helm-lab-git-token";
  let fixture: GitopsFixture;
  let git: GitHttpServer;
  let kube: KubeLab;
  let flux: FluxLab;
  let dir: string;
  let seed: string;

  const valuesFor = (tag: string) => ({
    "flux-charts/podtato-head/values-dev.yaml": `image:\n  repository: ghcr.io/podtato-head/podtato-server\n  tag: "${tag}"\n`,
  });
  const conditions = (hr: HelmReleaseObject) =>
    hr.status?.conditions?.map((c) => [c.type, c.status, c.reason, c.message]);
  const history = (hr: HelmReleaseObject) =>
    hr.status?.history?.map((h) => `${h.status} v${h.version}`).join(", ") ?? "";

  /** Commits to the values of `dev`, asks the GitRepository to fetch it, and watches `dev` until `done`. */
  async function commitAndWatch(tag: string, done: (hr: HelmReleaseObject, chartVersion: string) => boolean) {
    const sha = await commitToBare(fixture.bareDir, valuesFor(tag), `lab: podtato-head ${tag}`);
    const chartVersion = `0.1.0+${sha.slice(0, 12)}.1`;
    const watch = await flux.watch("HelmRelease", dev!.name);
    try {
      await flux.requestReconcile("GitRepository", "gitops");
      await waitFor(() => watch.changes.some((c) => done(c.object, chartVersion)), {
        timeoutMs: 90_000,
        what: `HelmRelease ${dev!.name} at ${chartVersion}`,
      });
    } finally {
      watch.stop();
    }
    const versions = watch.changes.map((c) => c.object);
    return {
      chartVersion,
      versions: versions.slice(0, versions.findIndex((v) => done(v, chartVersion)) + 1),
    };
  }

  before(async function () {
    this.timeout(300_000);
    await requireLabBinaries([...FLUX_LAB_BINARIES, FLUX_HELM_BINARY]);
    fixture = await createGitopsFixture({ ...fluxFiles });
    seed = (await gitLog(fixture.bareDir))[0]!.sha;
    git = await GitHttpServer.start({ projectRoot: join(fixture.root, "repos"), token: TOKEN });
    dir = await mkdtemp(join(tmpdir(), "lab-helm-"));
    kube = await KubeLab.start(dir);
    for (const object of SYNCFAIL_POLICY) await kube.apply(object);
    flux = await FluxLab.start(kube, dir, { helm: true });
    await flux.createGitRepository({
      name: "gitops",
      url: git.repoUrl("gitops.git"),
      username: git.username,
      password: TOKEN,
    });
    for (const hr of [dev!, pinned!]) await flux.createHelmRelease(hr);
    for (const hr of [dev!, pinned!]) await flux.waitForInstall(hr.name, 120_000);
  });

  after(async () => {
    await flux?.stop();
    await kube?.stop();
    await git?.stop();
    await fixture?.remove();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("installs: chart version <version>+<12 hex>.<HelmChart generation> with valuesFiles, and <version>+1 with ChartVersion", async () => {
    const hr = await flux.helmRelease(dev!.name);
    const chartVersion = `0.1.0+${seed.slice(0, 12)}.1`;
    const message = `Helm install succeeded for release podtato-helm-dev/podtato-helm-dev-${dev!.name}.v1 with chart podtato-head@${chartVersion}`;
    expect(conditions(hr)).to.deep.equal([
      ["Ready", "True", "InstallSucceeded", message],
      ["Released", "True", "InstallSucceeded", message],
    ]);
    expect(hr.status).to.include({
      helmChart: `flux-system/flux-system-${dev!.name}`,
      lastAttemptedRevision: chartVersion,
      lastAttemptedReleaseAction: "install",
      lastAttemptedGeneration: 1,
      observedGeneration: 1,
      storageNamespace: "flux-system",
    });
    expect(hr.status?.history?.[0]).to.include({
      chartName: "podtato-head",
      chartVersion,
      name: `podtato-helm-dev-${dev!.name}`,
      namespace: "podtato-helm-dev",
      status: "deployed",
      version: 1,
    });
    const chart = await flux.get("HelmChart", `flux-system-${dev!.name}`);
    expect(chart.status?.artifact?.revision).to.equal(chartVersion);
    const pinnedRelease = await flux.helmRelease(pinned!.name);
    expect(pinnedRelease.status?.history?.[0]).to.include({ chartVersion: "0.1.0+1", status: "deployed" });
  });

  it("upgrades on a new commit: Ready=True before the history, Reconciling last", async () => {
    const old = (await flux.helmRelease(dev!.name)).status?.lastAttemptedRevision;
    const { chartVersion, versions } = await commitAndWatch(
      "0.3.1",
      (hr, version) => hr.status?.history?.[0]?.chartVersion === version && !fluxCondition(hr, "Reconciling"),
    );
    const steps = versions.map((hr) => {
      const ready = fluxCondition(hr, "Ready");
      return {
        ready: `${ready?.status}/${ready?.reason}`,
        reconciling: fluxCondition(hr, "Reconciling")?.message ?? "-",
        lastAttemptedRevision: hr.status?.lastAttemptedRevision,
        history: history(hr),
      };
    });
    expect(steps).to.deep.equal(helmUpgradeSteps(old, chartVersion));
  });

  it("fails an upgrade the API server refuses: UpgradeFailed (cannot patch), then Stalled RetriesExceeded", async () => {
    const { chartVersion, versions } = await commitAndWatch(
      "0.3.2-syncfail",
      (hr, version) =>
        hr.status?.lastAttemptedRevision === version && fluxCondition(hr, "Stalled") !== undefined,
    );
    const failed = versions.at(-1)!;
    const release = `podtato-helm-dev-${dev!.name}`;
    const message =
      `Helm upgrade failed for release podtato-helm-dev/${release} with chart podtato-head@${chartVersion}: ` +
      `cannot patch "${release}" with kind Deployment: deployments.apps "${release}" is forbidden: ` +
      "ValidatingAdmissionPolicy 'lab-refuse-syncfail-images' with binding 'lab-refuse-syncfail-images' denied " +
      "request: the lab refuses images tagged syncfail";
    expect(conditions(failed)).to.deep.equal([
      ["Stalled", "True", "RetriesExceeded", "Failed to upgrade after 1 attempt(s)"],
      ["Ready", "False", "UpgradeFailed", message],
      ["Released", "False", "UpgradeFailed", message],
    ]);
    expect(failed.status).to.include({ failures: 1, upgradeFailures: 1 });
    // The failed release goes on top; the one before stays `deployed`.
    expect(history(failed)).to.equal("failed v3, deployed v2, superseded v1");
  });

  it("recovers on the next commit: failure counts cleared with the new attempt, history cut at the last good one", async () => {
    const { chartVersion, versions } = await commitAndWatch(
      "0.3.3",
      (hr, version) =>
        hr.status?.history?.[0]?.chartVersion === version &&
        hr.status.history.length === 3 &&
        !fluxCondition(hr, "Reconciling"),
    );
    const attempt = versions.find((hr) => hr.status?.lastAttemptedRevision === chartVersion);
    expect(attempt?.status).to.not.have.any.keys("failures", "upgradeFailures");
    const histories = versions.map(history);
    expect(histories).to.include("deployed v4, failed v3, superseded v2, superseded v1");
    expect(histories.at(-1)).to.equal("deployed v4, failed v3, superseded v2");
  });
});
