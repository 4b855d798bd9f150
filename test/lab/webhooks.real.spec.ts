import { expect } from "chai";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { gitLog } from "../support/gitops-fixture.js";
import { DeploymentWorld } from "../e2e/world.js";
import { ArgoCdLab } from "./argocd-lab.js";
import { documented } from "./documented.js";
import { fluxLabBackend } from "./flux-lab.js";
import { KubeLab } from "./kube-lab.js";
import { requireLabBinaries } from "./lab-paths.js";

/** The in-cluster URL the docs use, replaced by the service's address in the lab. */
const DOCS_SERVICE_URL = "http://keptn-gitops-service.keptn.svc.cluster.local:8080";

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
      fluxWatch: false,
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

// Argo CD Notifications configured exactly as docs/notifications.md says, with the real argocd-notifications.
describe("a real Argo CD notification wakes the deployment (lab)", function () {
  this.timeout(120_000);
  const token = "lab-argocd-webhook-token-6b8d0f2a";
  let world: DeploymentWorld;
  let kube: KubeLab | undefined;
  let dir: string | undefined;

  before(async function () {
    this.timeout(300_000);
    await requireLabBinaries(["kube-apiserver", "argocd", "helm"]);
    dir = await mkdtemp(join(tmpdir(), "lab-argocd-webhook-"));
    kube = await KubeLab.start(dir);
    world = await DeploymentWorld.start({
      backend: ArgoCdLab.backend(kube, dir, { notifications: { configMap: {} } }),
      watch: false,
      servicePollIntervalMs: 60_000,
      answerTimeoutMs: 45_000,
      webhooks: { fluxHmacKey: "unused-flux-key-0000", argocdToken: token },
    });
    const configMap = (await documented("ConfigMap", "argocd-notifications-cm"))["data"] as Record<
      string,
      string
    >;
    const service = parse(configMap["service.webhook.keptn-gitops"]!) as { url: string };
    expect(service.url).to.equal(DOCS_SERVICE_URL);
    configMap["service.webhook.keptn-gitops"] = configMap["service.webhook.keptn-gitops"]!.replace(
      DOCS_SERVICE_URL,
      world.httpUrl,
    );
    await (world.argo as ArgoCdLab).sendNotifications(configMap, { "keptn-gitops-token": token });
  });
  after(async () => {
    await world?.stop();
    await kube?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("finishes from the webhook of argocd-notifications, long before the next poll", async () => {
    const started = Date.now();
    const { id } = world.trigger({ image: "docker.io/keptnexamples/carts:0.22.0" });
    const { finished } = await world.answersFor(id);
    expect(finished.data).to.include({ status: "succeeded", result: "pass" });
    expect(Date.now() - started, "well before the 60 s poll").to.be.below(45_000);
    const woke = world.logLines.filter((line) => line.includes('"msg":"Argo CD notification"'));
    expect(woke.some((line) => line.includes('"app":"carts-dev"') && line.includes('"woken":1'))).to.equal(
      true,
    );
  });
});
