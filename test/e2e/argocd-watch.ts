import { expect } from "chai";
import { gitLog } from "../support/gitops-fixture.js";
import { worldFor, type DeploymentWorld } from "./world.js";

export interface WatchScenarioOptions {
  backend: string;
  /** A world whose service polls once a minute, so that only the watch stream can finish a deployment in time. */
  startWorld: () => Promise<DeploymentWorld>;
  testTimeoutMs: number;
}

/**
 * The Argo CD watch stream as the only signal: the service reads the application once (the refresh right after
 * the push) and finishes from what `/api/v1/stream/applications` brings. Runs against the simulator
 * (argocd-watch.spec.ts) and the real Argo CD (test/lab/argocd-watch.real.spec.ts).
 */
export function watchScenarios({ backend, startWorld, testTimeoutMs }: WatchScenarioOptions): void {
  describe(`the Argo CD watch stream alone (${backend})`, function () {
    this.timeout(testTimeoutMs);
    const world = worldFor(startWorld);

    const reads = (app: string) =>
      world().argo.requests.filter((r) => r.method === "GET" && r.path === `/api/v1/applications/${app}`);

    it("finishes a deployment from stream frames, with one read of the application (the refresh)", async () => {
      const readsBefore = reads("carts-dev").length;
      const { id } = world().trigger({ image: "docker.io/keptnexamples/carts:0.20.0" });
      const { finished } = await world().answersFor(id, 20_000);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.deployment?.gitCommit).to.equal((await gitLog(world().fixture.bareDir))[0]!.sha);
      const ours = reads("carts-dev").slice(readsBefore);
      expect(ours.map((r) => r.query["refresh"])).to.deep.equal(["normal"]);
      expect(
        world().argo.requests.filter((r) => r.path === "/api/v1/stream/applications"),
      ).to.have.length.of.at.least(1);
    });

    it("answers a Degraded rollout from the stream too", async () => {
      const { id } = world().trigger({ image: "docker.io/keptnexamples/carts:0.20.1-crashloop" });
      const { finished } = await world().answersFor(id, 20_000);
      expect(finished.data).to.include({ status: "succeeded", result: "fail" });
      expect(finished.data.message).to.include("Degraded");
    });

    it("serves concurrent deployments of several applications from the one stream", async () => {
      const streamsBefore = world().argo.requests.filter(
        (r) => r.path === "/api/v1/stream/applications",
      ).length;
      const carts = world().trigger({ image: "docker.io/keptnexamples/carts:0.20.2" });
      const orders = world().trigger({ service: "orders", image: "docker.io/keptnexamples/orders:0.20.2" });
      for (const { id } of [carts, orders]) {
        const { finished } = await world().answersFor(id, 20_000);
        expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      }
      const streamsAfter = world().argo.requests.filter(
        (r) => r.path === "/api/v1/stream/applications",
      ).length;
      expect(streamsAfter - streamsBefore, "new stream connections").to.be.at.most(1);
    });
  });
}

/**
 * Without the stream (`watch: false`): one `GET /api/v1/applications` per poll interval serves every in-flight
 * deployment; a deployment reads its own application only for the refresh right after its push.
 */
export function sharedPollScenarios({ backend, startWorld, testTimeoutMs }: WatchScenarioOptions): void {
  describe(`the shared poll schedule, no stream (${backend})`, function () {
    this.timeout(testTimeoutMs);
    const world = worldFor(startWorld);

    it("finishes concurrent deployments from list reads, with one read of each application (the refresh)", async () => {
      const before = world().argo.requests.length;
      const carts = world().trigger({ image: "docker.io/keptnexamples/carts:0.23.0" });
      const orders = world().trigger({ service: "orders", image: "docker.io/keptnexamples/orders:0.23.0" });
      for (const { id } of [carts, orders]) {
        const { finished } = await world().answersFor(id, 30_000);
        expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      }
      const calls = world().argo.requests.slice(before);
      for (const app of ["carts-dev", "orders-dev"]) {
        const own = calls.filter((r) => r.method === "GET" && r.path === `/api/v1/applications/${app}`);
        expect(
          own.map((r) => r.query["refresh"]),
          app,
        ).to.deep.equal(["normal"]);
      }
      expect(calls.some((r) => r.path === "/api/v1/applications")).to.equal(true);
      expect(calls.some((r) => r.path === "/api/v1/stream/applications")).to.equal(false);
    });
  });
}
