import { expect } from "chai";
import { gitLog } from "../support/gitops-fixture.js";
import { DeploymentWorld } from "../e2e/world.js";
import { fluxLabBackend } from "./flux-lab.js";

// The real Flux notification-controller posts to the service's /webhooks/flux (a generic-hmac Provider and an
// Alert for every Kustomization). The service polls once a minute, so only the notification can finish the
// deployment in time; the notification wakes it, and the Kustomization it then reads decides.
describe("a real Flux notification wakes the deployment (lab)", function () {
  this.timeout(120_000);
  let world: DeploymentWorld;

  before(async function () {
    this.timeout(300_000);
    world = await DeploymentWorld.start({
      flux: fluxLabBackend({ notifications: true }),
      watch: false,
      servicePollIntervalMs: 60_000,
      answerTimeoutMs: 45_000,
      webhooks: { fluxHmacKey: "lab-flux-hmac-key-2f4a6c8e", argocdToken: "lab-argocd-webhook-token-1d3f" },
    });
  });
  after(async () => {
    await world?.stop();
  });

  it("finishes from notification-controller's signed event, long before the next poll", async () => {
    const started = Date.now();
    const { id } = world.trigger({
      project: "podtato",
      service: "podtato-head",
      image: "ghcr.io/podtato-head/podtato-server:0.8.0",
    });
    const { finished } = await world.answersFor(id);
    expect(finished.data).to.include({ status: "succeeded", result: "pass" });
    expect(finished.data.deployment?.gitCommit).to.equal((await gitLog(world.fixture.bareDir))[0]!.sha);
    expect(Date.now() - started, "well before the 60 s poll").to.be.below(45_000);
    const woke = world.logLines.filter((line) => line.includes('"msg":"Flux notification"'));
    expect(
      woke.some((line) => line.includes('"name":"podtato-head-dev"') && line.includes('"woken":1')),
    ).to.equal(true);
  });
});
