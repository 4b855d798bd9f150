import { expect } from "chai";
import { gitLog, readFileAt } from "../support/gitops-fixture.js";
import { worldFor, type DeploymentWorld } from "./world.js";

export interface FluxScenarioOptions {
  /** e.g. "Flux simulator" or "real Flux (lab)" */
  backend: string;
  startWorld: () => Promise<DeploymentWorld>;
  /** Mocha timeout of one scenario. */
  testTimeoutMs: number;
  /** The `slowTimeout` the world was started with, as the service prints it. */
  slowTimeout: string;
}

/**
 * The deployment flow through Flux: Keptn over NATS -> commit -> Flux Kustomization -> finished. Runs against the
 * Flux simulator (test/e2e/flux-flow.spec.ts) and the real Flux of the lab (test/lab/flux-flow.real.spec.ts).
 */
export function fluxScenarios({
  backend,
  startWorld,
  testTimeoutMs,
  slowTimeout,
}: FluxScenarioOptions): void {
  describe(`deployment through GitOps (NATS -> git -> ${backend})`, function () {
    this.timeout(testTimeoutMs);
    const world = worldFor(startWorld);

    const file = (stage: string) => `clusters/${stage}/podtato-head/deployment.yaml`;

    it("commits the new image, waits until the Kustomization has applied that commit, and answers pass", async () => {
      const before = (await gitLog(world().fixture.bareDir))[0]!.sha;
      const image = "ghcr.io/podtato-head/podtato-server:0.3.1";
      const { id } = world().trigger({ project: "podtato", service: "podtato-head", image });
      const { finished } = await world().answersFor(id);

      const log = await gitLog(world().fixture.bareDir);
      expect(log[1]!.sha).to.equal(before);
      expect(await readFileAt(world().fixture.bareDir, "main", file("dev"))).to.include(
        `image: ${image} # managed by Keptn`,
      );
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.deployment?.gitCommit).to.equal(log[0]!.sha);
      expect(finished.data.deployment?.deploymentNames).to.deep.equal(["podtato-head-dev"]);
      expect(finished.data.message)
        .to.include(
          `Flux Kustomization flux-system/podtato-head-dev applied commit ${log[0]!.sha.slice(0, 7)}`,
        )
        .and.include(`revision main@sha1:${log[0]!.sha}`)
        .and.include(`Applied revision: main@sha1:${log[0]!.sha}`);
    });

    it("reports an apply the API server refuses as a failed deployment with Flux's message", async () => {
      const { id } = world().trigger({
        project: "podtato",
        service: "podtato-head",
        image: "ghcr.io/podtato-head/podtato-server:0.3.2-syncfail",
      });
      const { finished } = await world().answersFor(id);
      const sha = (await gitLog(world().fixture.bareDir))[0]!.sha;
      expect(finished.data).to.include({ status: "succeeded", result: "fail" });
      expect(finished.data.message)
        .to.include(`could not apply commit ${sha.slice(0, 7)}`)
        .and.include("ReconciliationFailed")
        .and.include("dry-run failed");
      expect(finished.data.deployment?.gitCommit).to.equal(sha);
    });

    it("recovers on the next commit after a refused one", async () => {
      const { id } = world().trigger({
        project: "podtato",
        service: "podtato-head",
        image: "ghcr.io/podtato-head/podtato-server:0.3.3",
      });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
    });

    it("reports a failed health check as a failed deployment", async () => {
      const { id } = world().trigger({
        project: "podtato",
        stage: "health",
        service: "podtato-head",
        image: "ghcr.io/podtato-head/podtato-server:0.4.0-crashloop",
      });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "fail" });
      expect(finished.data.message)
        .to.include("Flux Kustomization flux-system/podtato-head-health could not apply commit")
        .and.include("HealthCheckFailed: health check failed after 30");
    });

    it("makes no commit when the value is already deployed, and deploys the current head", async () => {
      const before = (await gitLog(world().fixture.bareDir))[0]!.sha;
      const { id } = world().trigger({
        project: "podtato",
        service: "podtato-head",
        image: "ghcr.io/podtato-head/podtato-server:0.3.3",
      });
      const { finished } = await world().answersFor(id);
      expect((await gitLog(world().fixture.bareDir))[0]!.sha).to.equal(before);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.deployment?.gitCommit).to.equal(before);
    });

    it("times out with errored/fail and says what Flux showed last", async () => {
      const { id } = world().trigger({
        project: "podtato-slow",
        stage: "health",
        service: "podtato-head",
        image: "ghcr.io/podtato-head/podtato-server:0.5.0-hang",
      });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "errored", result: "fail" });
      expect(finished.data.message)
        .to.include(`did not finish within ${slowTimeout}`)
        .and.include("last seen: Ready ");
    });

    it("answers errored, without committing, when the Kustomization does not exist", async () => {
      const before = (await gitLog(world().fixture.bareDir))[0]!.sha;
      const { id } = world().trigger({
        project: "podtato-missing",
        service: "podtato-head",
        image: "ghcr.io/podtato-head/podtato-server:0.6.0",
      });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "errored", result: "fail" });
      expect(finished.data.message).to.include("no Kustomization flux-system/no-such-kustomization (404)");
      expect((await gitLog(world().fixture.bareDir))[0]!.sha, "no commit").to.equal(before);
    });
  });
}
