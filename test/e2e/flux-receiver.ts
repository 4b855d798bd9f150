import { expect } from "chai";
import { gitLog } from "../support/gitops-fixture.js";
import { worldFor, type DeploymentWorld } from "./world.js";

export interface FluxReceiverScenarioOptions {
  /** e.g. "Flux simulator" or "real Flux (lab)" */
  backend: string;
  /** A world whose Flux backend runs the Receiver `keptn-gitops` and gives the service its URL and key. */
  startWorld: () => Promise<DeploymentWorld>;
  /** The same, but the service has a key that is not the Receiver's token. */
  startWrongKeyWorld: () => Promise<DeploymentWorld>;
  testTimeoutMs: number;
}

/** The requestedAt value the service itself writes: an ISO time (`Date.toISOString()`). */
const SERVICE_REQUESTED_AT = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/**
 * A notification-controller Receiver instead of the service's own requestedAt patches
 * (`flux.clusters[].receiver`, docs/notifications.md): the service posts the commit to the Receiver, which
 * annotates the GitRepository; the deployment then finishes as usual. Runs against the Flux simulator
 * (flux-receiver.spec.ts) and the real notification-controller (test/lab/flux-receiver.real.spec.ts).
 */
export function fluxReceiverScenarios(options: FluxReceiverScenarioOptions): void {
  describe(`a Flux Receiver asks Flux to reconcile (${options.backend})`, function () {
    this.timeout(options.testTimeoutMs);
    const world = worldFor(options.startWorld);

    it("calls the Receiver after the push instead of patching, and finishes from what Flux applied", async () => {
      const from = world().flux?.requests?.length ?? 0;
      const { id } = world().trigger({
        project: "podtato",
        service: "podtato-head",
        image: "ghcr.io/podtato-head/podtato-server:0.10.0",
      });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.deployment?.gitCommit).to.equal((await gitLog(world().fixture.bareDir))[0]!.sha);
      // notification-controller wrote the request, in its own time format, not the service.
      const requestedAt = (await world().flux!.gitRepository("gitops")).metadata?.annotations?.[
        "reconcile.fluxcd.io/requestedAt"
      ];
      expect(requestedAt, "the Receiver annotated the GitRepository").to.be.a("string");
      expect(requestedAt).to.not.match(SERVICE_REQUESTED_AT);
      const patches = (world().flux?.requests ?? []).slice(from).filter((r) => r.method === "PATCH");
      expect(patches, "the service's own patches").to.deep.equal([]);
    });
  });

  describe(`a Flux Receiver that refuses the service's signature (${options.backend})`, function () {
    this.timeout(options.testTimeoutMs);
    const world = worldFor(options.startWrongKeyWorld);

    it("answers errored with what to check, and shows neither the key nor the Receiver's path", async () => {
      const { id } = world().trigger({
        project: "podtato",
        service: "podtato-head",
        image: "ghcr.io/podtato-head/podtato-server:0.10.1",
      });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "errored", result: "fail" });
      expect(finished.data.message)
        .to.include("the Flux Receiver of cluster lab refused the call (400")
        .and.include("flux.clusters.lab.receiver.hmacKey");
      const receiver = world().flux!.receiver!;
      const digest = new URL(receiver.url).pathname.split("/").pop()!;
      const everything = [JSON.stringify(finished), ...world().logLines].join("\n");
      expect(everything).to.not.include(receiver.hmacKey).and.not.include(digest);
    });
  });
}
