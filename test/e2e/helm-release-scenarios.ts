import { expect } from "chai";
import { parse } from "yaml";
import { gitLog, readFileAt } from "../support/gitops-fixture.js";
import { worldFor, type DeploymentWorld, type FluxObjectView } from "./world.js";

export interface HelmReleaseScenarioOptions {
  /** e.g. "Flux simulator" or "real Flux (lab)" */
  backend: string;
  /** A world whose Flux backend runs the HelmReleases of FLUX_HELM_RELEASES (test/e2e/flux-backend.ts). */
  startWorld: () => Promise<DeploymentWorld>;
  /** Mocha timeout of one scenario. */
  testTimeoutMs: number;
  /** The `slowTimeout` the world was started with, as the service prints it. */
  slowTimeout: string;
}

const RELEASE = "podtato-head-helm-dev";
const VALUES_FILE = "flux-charts/podtato-head/values-dev.yaml";
const IMAGE = "ghcr.io/podtato-head/podtato-server";

/** The Ready condition of a Flux object, as `Status/Reason: message`. */
function ready(object: FluxObjectView): string {
  const condition = object.status?.conditions?.find((c) => c.type === "Ready");
  return condition ? `${condition.status}/${condition.reason}: ${condition.message}` : "no Ready condition";
}

/**
 * The deployment flow through a Flux HelmRelease: Keptn over NATS -> a tag in the chart's values file -> Flux builds
 * the chart at that commit (`reconcileStrategy: Revision`, so the chart version names it) and helm-controller
 * releases it -> finished. Runs against the Flux simulator (test/e2e/helm-release.spec.ts) and the real
 * source-controller and helm-controller of the lab (test/lab/helm-release.real.spec.ts). The scenarios build on
 * each other, in order, on one HelmRelease.
 */
export function helmReleaseScenarios({
  backend,
  startWorld,
  testTimeoutMs,
  slowTimeout,
}: HelmReleaseScenarioOptions): void {
  describe(`deployment through a Flux HelmRelease (NATS -> git -> ${backend})`, function () {
    this.timeout(testTimeoutMs);
    const world = worldFor(startWorld);

    const head = async () => (await gitLog(world().fixture.bareDir))[0]!.sha;
    const tagAt = async (ref: string) =>
      (parse(await readFileAt(world().fixture.bareDir, ref, VALUES_FILE)) as { image: { tag: unknown } })
        .image.tag;
    const helmRelease = (name = RELEASE) => world().flux!.helmRelease(name);

    it("commits the tag to the values file, waits until the release's chart version names that commit, and answers pass", async () => {
      const before = await head();
      const { id } = world().trigger({
        project: "podtato-helm",
        service: "podtato-head",
        image: `${IMAGE}:0.3.1`,
      });
      const { finished } = await world().answersFor(id);

      const log = await gitLog(world().fixture.bareDir);
      const sha = log[0]!.sha;
      expect(log[1]!.sha, "one commit on top of the previous head").to.equal(before);
      expect(await tagAt(sha)).to.equal("0.3.1");
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.deployment?.gitCommit).to.equal(sha);

      // What the API shows: the newest release is deployed with a chart version built from that commit.
      const hr = await helmRelease();
      const latest = hr.status?.history?.[0];
      expect(latest?.["status"], JSON.stringify(hr.status)).to.equal("deployed");
      const chartVersion = String(latest?.["chartVersion"]);
      expect(chartVersion).to.match(new RegExp(`^0\\.1\\.0\\+${sha.slice(0, 12)}(\\.\\d+)?$`));
      expect(finished.data.message)
        .to.include(`Flux HelmRelease flux-system/${RELEASE} released commit ${sha.slice(0, 7)}`)
        .and.include(`chart version ${chartVersion}`);
    });

    it("reports a release the API server refuses as a failed deployment with Flux's message", async () => {
      const { id } = world().trigger({
        project: "podtato-helm",
        service: "podtato-head",
        image: `${IMAGE}:0.3.2-syncfail`,
      });
      const { finished } = await world().answersFor(id);
      const sha = await head();
      expect(await tagAt(sha)).to.equal("0.3.2-syncfail");
      expect(finished.data).to.include({ status: "succeeded", result: "fail" });
      expect(finished.data.deployment?.gitCommit).to.equal(sha);
      expect(finished.data.message)
        .to.match(/UpgradeFailed|InstallFailed/)
        .and.include(`could not release commit ${sha.slice(0, 7)}`)
        .and.include("the lab refuses images tagged syncfail");

      // The API shows the same: Ready=False for the chart version of that commit, the newest release failed.
      const hr = await helmRelease();
      expect(ready(hr)).to.match(/^False\/UpgradeFailed: Helm upgrade failed for release /);
      expect(hr.status?.lastAttemptedRevision).to.match(new RegExp(`^0\\.1\\.0\\+${sha.slice(0, 12)}`));
      expect(hr.status?.history?.[0]?.["status"]).to.equal("failed");
    });

    it("recovers on the next commit, although the release still shows the refused one when the service asks", async () => {
      // helm-controller does not retry a failed release until the chart, the values or the generation change; the
      // new commit changes the chart version. A reconcile requested before the chart is rebuilt finds the old
      // failure again (lab): the service must not take it for this commit's.
      const { id } = world().trigger({
        project: "podtato-helm",
        service: "podtato-head",
        image: `${IMAGE}:0.3.3`,
      });
      const { finished } = await world().answersFor(id);
      const sha = await head();
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.deployment?.gitCommit).to.equal(sha);
      expect(finished.data.message).to.include(`released commit ${sha.slice(0, 7)}`);
      const hr = await helmRelease();
      expect(hr.status?.history?.[0]).to.include({ status: "deployed" });
      expect(String(hr.status?.history?.[0]?.["chartVersion"])).to.include(`+${sha.slice(0, 12)}`);
    });

    it("makes no commit when the tag is already deployed, and answers pass for the current head", async () => {
      const before = await head();
      const { id } = world().trigger({
        project: "podtato-helm",
        service: "podtato-head",
        image: `${IMAGE}:0.3.3`,
      });
      const { finished } = await world().answersFor(id);
      expect(await head()).to.equal(before);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.deployment?.gitCommit).to.equal(before);
      expect(finished.data.message).to.include(`released commit ${before.slice(0, 7)}`);
    });

    it("answers errored, without committing, when the HelmRelease's chart does not follow commits (reconcileStrategy ChartVersion)", async () => {
      const before = await head();
      const { id } = world().trigger({
        project: "podtato-helm",
        stage: "pinned",
        service: "podtato-head",
        image: `${IMAGE}:0.7.0`,
      });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "errored", result: "fail" });
      expect(finished.data.message)
        .to.include("podtato-head-helm-pinned")
        .and.include("set spec.chart.spec.reconcileStrategy: Revision")
        .and.not.include("Committed");
      expect(await head(), "no commit for a release that cannot show it").to.equal(before);
      // The API shows why: the chart version is the bare Chart.yaml version, with no commit in it.
      const pinned = await helmRelease("podtato-head-helm-pinned");
      expect(String(pinned.status?.history?.[0]?.["chartVersion"])).to.match(/^0\.1\.0(\+\d+)?$/);
    });

    it("times out with errored/fail while Helm still waits for the upgraded Deployment", async () => {
      const { id } = world().trigger({
        project: "podtato-helm-slow",
        stage: "wait",
        service: "podtato-head",
        image: `${IMAGE}:0.5.0-hang`,
      });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "errored", result: "fail" });
      expect(finished.data.message).to.include(`did not finish within ${slowTimeout}`);
      expect(finished.data.deployment?.gitCommit).to.equal(await head());
    });

    it("answers errored, without committing, when the HelmRelease does not exist", async () => {
      const before = await head();
      const { id } = world().trigger({
        project: "podtato-helm-missing",
        service: "podtato-head",
        image: `${IMAGE}:0.6.0`,
      });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "errored", result: "fail" });
      expect(finished.data.message)
        .to.include("HelmRelease flux-system/no-such-helmrelease")
        .and.include("404");
      expect(await head(), "no commit for a release that does not exist").to.equal(before);
    });
  });
}
