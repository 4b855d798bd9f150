import { expect } from "chai";
import { gitLog } from "../support/gitops-fixture.js";
import { worldFor, type DeploymentWorld } from "./world.js";

export interface FluxSignalScenarioOptions {
  /** e.g. "Flux simulator" or "real Flux (lab)" */
  backend: string;
  /** A world whose service watches (`watch: true`) and reads on its own only once a minute. */
  startWatchWorld: () => Promise<DeploymentWorld>;
  /** A world whose service only polls (`watch: false`). */
  startPollWorld: () => Promise<DeploymentWorld>;
  testTimeoutMs: number;
}

const KUSTOMIZATIONS = "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations";

/** The service's calls to the Kubernetes API, where the backend records them (the simulator; not the lab). */
function calls(world: DeploymentWorld) {
  const requests = world.flux?.requests;
  return {
    recorded: requests !== undefined,
    count: () => requests?.length ?? 0,
    since: (from: number) => (requests ?? []).slice(from),
  };
}

/**
 * Each completion signal of Flux alone: the shared list-and-watch (a deployment reads its Kustomization at most once
 * and finishes from the versions the watch brings), and polling alone (`watch: false`). The webhook signal, a
 * notification that makes the service read the object, is in webhooks.spec.ts and webhooks.real.spec.ts. Runs
 * against the Flux simulator (flux-signals.spec.ts) and the real Flux (test/lab/flux-signals.real.spec.ts); the
 * request counts are asserted where the backend records requests.
 */
export function fluxSignalScenarios(options: FluxSignalScenarioOptions): void {
  const { backend, testTimeoutMs } = options;

  describe(`the Flux watch alone (${backend})`, function () {
    this.timeout(testTimeoutMs);
    const world = worldFor(options.startWatchWorld);

    it("finishes from the watch, well before the service's own next read", async () => {
      const api = calls(world());
      const from = api.count();
      const started = Date.now();
      const { id } = world().trigger({
        project: "podtato",
        service: "podtato-head",
        image: "ghcr.io/podtato-head/podtato-server:0.9.0",
      });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.deployment?.gitCommit).to.equal((await gitLog(world().fixture.bareDir))[0]!.sha);
      // With the watch up, the service reads the object itself only every watchPollInterval (30 s).
      expect(Date.now() - started, "before the 30 s safety-net read").to.be.below(25_000);
      if (!api.recorded) return;
      const ours = api.since(from);
      const reads = ours.filter((r) => r.method === "GET" && r.path === `${KUSTOMIZATIONS}/podtato-head-dev`);
      expect(reads.length, "reads of the Kustomization (the first, unless the watch had it)").to.be.at.most(
        1,
      );
      expect(ours.filter((r) => r.method === "PATCH")).to.have.length(2);
    });

    it("answers a refused apply from the watch too", async () => {
      const { id } = world().trigger({
        project: "podtato",
        service: "podtato-head",
        image: "ghcr.io/podtato-head/podtato-server:0.9.1-syncfail",
      });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "fail" });
      expect(finished.data.message).to.include("ReconciliationFailed");
    });

    it("serves concurrent deployments from one watch of the Kustomizations", async () => {
      const api = calls(world());
      const from = api.count();
      const ids = [0, 1, 2].map(
        (n) =>
          world().trigger({
            project: "podtato",
            service: "podtato-head",
            image: `ghcr.io/podtato-head/podtato-server:0.9.${n + 2}`,
          }).id,
      );
      for (const id of ids) {
        const { finished } = await world().answersFor(id);
        expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      }
      if (!api.recorded) return;
      const ours = api.since(from);
      const watches = ours.filter((r) => r.path === KUSTOMIZATIONS && r.query["watch"] === "true");
      expect(watches.length, "new watch requests (the watch stays open between deployments)").to.be.at.most(
        1,
      );
      const reads = ours.filter((r) => r.method === "GET" && r.path === `${KUSTOMIZATIONS}/podtato-head-dev`);
      expect(reads.length, "own reads of the Kustomization").to.be.at.most(ids.length);
    });
  });

  describe(`Flux polling alone, no watch (${backend})`, function () {
    this.timeout(testTimeoutMs);
    const world = worldFor(options.startPollWorld);

    it("finishes from reads of the Kustomization, without any list or watch", async () => {
      const api = calls(world());
      const from = api.count();
      const { id } = world().trigger({
        project: "podtato",
        service: "podtato-head",
        image: "ghcr.io/podtato-head/podtato-server:0.9.5",
      });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      if (!api.recorded) return;
      const ours = api.since(from);
      expect(
        ours.filter((r) => r.path === KUSTOMIZATIONS),
        "lists and watches",
      ).to.deep.equal([]);
      const reads = ours.filter((r) => r.method === "GET" && r.path === `${KUSTOMIZATIONS}/podtato-head-dev`);
      expect(reads.length, "reads of the Kustomization").to.be.at.least(2);
    });
  });
}
