import { expect } from "chai";
import { gitLog } from "../support/gitops-fixture.js";
import { fluxEvent, signFluxEvent } from "../support/notifications.js";
import { waitFor } from "../support/wait.js";
import { fluxSimulatorBackend } from "./flux-backend.js";
import { DeploymentWorld } from "./world.js";

const FLUX_HMAC_KEY = "flux-hmac-key-5b7d9e1f3a";
const ARGOCD_WEBHOOK_TOKEN = "argocd-webhook-token-8c6a4e2b0d";
const FLUX_GENERIC_TOKEN = "flux-generic-token-4d2f6b8a1c";

const sign = (body: string, key = FLUX_HMAC_KEY) => signFluxEvent(body, key);

// The service polls once a minute and has no Argo CD watch stream here: only a notification can finish a
// deployment in time. Each notification only makes it read the API; the API decides.
describe("notification webhooks (Flux generic-hmac, Argo CD Notifications)", function () {
  this.timeout(30_000);
  let world: DeploymentWorld;

  before(async function () {
    this.timeout(120_000);
    world = await DeploymentWorld.start({
      flux: fluxSimulatorBackend(),
      watch: false,
      fluxWatch: false,
      servicePollIntervalMs: 60_000,
      webhooks: {
        fluxHmacKey: FLUX_HMAC_KEY,
        argocdToken: ARGOCD_WEBHOOK_TOKEN,
        fluxToken: FLUX_GENERIC_TOKEN,
      },
    });
  });
  after(async () => {
    await world?.stop();
  });

  const post = (path: string, body: string | Buffer, headers: { [name: string]: string | undefined }) =>
    fetch(`${world.httpUrl}${path}`, {
      method: "POST",
      body,
      headers: Object.fromEntries(
        Object.entries({ "content-type": "application/json", ...headers }).filter(
          (entry): entry is [string, string] => entry[1] !== undefined,
        ),
      ),
    });

  it("a Flux notification makes the service read the Kustomization; an early one changes nothing", async () => {
    const before = (await gitLog(world.fixture.bareDir))[0]!.sha;
    const { id } = world.trigger({
      project: "podtato",
      service: "podtato-head",
      image: "ghcr.io/podtato-head/podtato-server:0.7.0",
    });
    const sha = await waitFor(
      async () => {
        const head = (await gitLog(world.fixture.bareDir))[0]!.sha;
        return head !== before ? head : undefined;
      },
      { timeoutMs: 10_000, what: "the service's commit" },
    );
    // Early, and about the old revision: the service reads the API and goes on waiting.
    const early = await post("/webhooks/flux", fluxEvent("podtato-head-dev", `main@sha1:${before}`), {
      "x-signature": sign(fluxEvent("podtato-head-dev", `main@sha1:${before}`)),
    });
    expect(early.status).to.equal(202);
    expect(world.answersSoFar(id).map((e) => e.type)).to.not.include("sh.keptn.event.deployment.finished");

    await waitFor(
      async () =>
        (await world.flux!.kustomization("podtato-head-dev")).status?.lastAppliedRevision ===
        `main@sha1:${sha}`,
      { timeoutMs: 10_000, intervalMs: 50, what: "Flux applied the commit" },
    );
    const body = fluxEvent("podtato-head-dev", `main@sha1:${sha}`);
    const answer = await post("/webhooks/flux", body, { "x-signature": sign(body) });
    expect(answer.status).to.equal(202);
    expect(await answer.json()).to.deep.equal({ woken: 1 });
    const { finished } = await world.answersFor(id, 10_000);
    expect(finished.data).to.include({ status: "succeeded", result: "pass" });
    expect(finished.data.deployment?.gitCommit).to.equal(sha);

    // A duplicate after the end wakes nobody and changes nothing.
    const duplicate = await post("/webhooks/flux", body, { "x-signature": sign(body) });
    expect(await duplicate.json()).to.deep.equal({ woken: 0 });
    expect(world.answersSoFar(id).filter((e) => e.type.endsWith(".finished"))).to.have.length(1);
  });

  it("an Argo CD notification makes the service read the application", async () => {
    const simulator = world.simulator!;
    const settled: string[] = [];
    const onSettled = (event: { app: string; revision: string }) => {
      if (event.app === "carts-dev") settled.push(event.revision);
    };
    simulator.on("settled", onSettled);
    const before = (await gitLog(world.fixture.bareDir))[0]!.sha;
    const { id } = world.trigger({ image: "docker.io/keptnexamples/carts:0.21.0" });
    const sha = await waitFor(
      async () => {
        const head = (await gitLog(world.fixture.bareDir))[0]!.sha;
        return head !== before && settled.includes(head) ? head : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 50, what: "Argo CD settled the commit" },
    ).finally(() => simulator.off("settled", onSettled));
    // Sent as soon as the operation succeeded, as argocd-notifications does: the application may still say
    // OutOfSync, and the service reads it again shortly after (the follow-up after a notification).
    const answer = await post("/webhooks/argocd", JSON.stringify({ app: "carts-dev", revision: sha }), {
      authorization: `Bearer ${ARGOCD_WEBHOOK_TOKEN}`,
    });
    expect(answer.status).to.equal(202);
    const { finished } = await world.answersFor(id, 10_000);
    expect(finished.data).to.include({ status: "succeeded", result: "pass" });
  });

  it("takes a Flux generic Provider's bearer token (from its Secret's headers) instead of a signature", async () => {
    const body = fluxEvent("podtato-head-dev", `main@sha1:${"b".repeat(40)}`);
    const answer = await post("/webhooks/flux", body, { authorization: `Bearer ${FLUX_GENERIC_TOKEN}` });
    expect(answer.status).to.equal(202);
    const wrong = await post("/webhooks/flux", body, { authorization: "Bearer not-the-token" });
    expect(wrong.status).to.equal(401);
  });

  describe("refuses what it must not trust", () => {
    const body = fluxEvent("podtato-head-dev", `main@sha1:${"a".repeat(40)}`);

    it("401 for a missing or wrong Flux signature, or a signature with another key", async () => {
      for (const headers of [
        {},
        { "x-signature": "sha256=00" },
        { "x-signature": sign(body, "another-key") },
        { "x-signature": `md5=${"0".repeat(32)}` },
      ]) {
        const answer = await post("/webhooks/flux", body, headers);
        expect(answer.status).to.equal(401);
        expect(((await answer.json()) as { error: string }).error).to.include("X-Signature");
      }
    });

    it("401 for a missing or wrong Argo CD token", async () => {
      const notification = JSON.stringify({ app: "carts-dev" });
      for (const headers of [
        {},
        { authorization: "Bearer not-the-token" },
        { authorization: ARGOCD_WEBHOOK_TOKEN },
      ]) {
        expect((await post("/webhooks/argocd", notification, headers)).status).to.equal(401);
      }
    });

    it("413 for a body over webhooks.maxBodyBytes", async () => {
      const big = JSON.stringify({ padding: "x".repeat(5000) });
      const answer = await post("/webhooks/flux", big, { "x-signature": sign(big) });
      expect(answer.status).to.equal(413);
      expect(((await answer.json()) as { error: string }).error).to.include("4096 bytes");
    });

    it("400 for a signed body that is not JSON or not a Flux event", async () => {
      for (const bad of ["{not json", JSON.stringify({ reason: "NoObject" })]) {
        const answer = await post("/webhooks/flux", bad, { "x-signature": sign(bad) });
        expect(answer.status).to.equal(400);
      }
      const argo = await post("/webhooks/argocd", JSON.stringify({ application: "carts-dev" }), {
        authorization: `Bearer ${ARGOCD_WEBHOOK_TOKEN}`,
      });
      expect(argo.status).to.equal(400);
      expect(((await argo.json()) as { error: string }).error).to.include("app");
    });

    it("never logs the webhook secrets", () => {
      const all = world.logLines.join("\n");
      expect(all).to.not.include(FLUX_HMAC_KEY);
      expect(all).to.not.include(ARGOCD_WEBHOOK_TOKEN);
      expect(all).to.not.include(FLUX_GENERIC_TOKEN);
    });
  });
});
