import { request } from "node:http";
import { expect } from "chai";
import {
  commitToBare,
  createGitopsFixture,
  defaultGitopsFiles,
  gitLog,
  type GitopsFixture,
} from "../../support/gitops-fixture.js";
import { waitFor } from "../../support/wait.js";
import { FluxSimulator, formatGoDuration, goDurationMs } from "./flux-simulator.js";
import type { FluxCondition } from "./flux-simulator.js";
import {
  helmUpgradeSteps,
  kustomizationApplySteps,
  kustomizationReconcilingMessages,
} from "../../support/flux-pins.js";

// What a client of the Kubernetes API sees of the simulated Flux: the same shapes and sequences that
// test/lab/flux.real.spec.ts pins on the real controllers (docs/testing.md "Flux in the lab").

const TOKEN = "flux-simulator-test-token";
const KS_PATH = "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations";
const GR_PATH = "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories";
const HR_PATH = "/apis/helm.toolkit.fluxcd.io/v2/namespaces/flux-system/helmreleases";
const REPO_URL = "http://git.example.invalid/sockshop/gitops.git";

interface FluxObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    generation: number;
    resourceVersion: string;
    annotations?: Record<string, string>;
    finalizers?: string[];
  };
  spec: Record<string, unknown>;
  status: {
    conditions?: FluxCondition[];
    observedGeneration?: number;
    lastAppliedRevision?: string;
    lastAttemptedRevision?: string;
    lastHandledReconcileAt?: string;
    artifact?: {
      revision: string;
      digest: string;
      path: string;
      url: string;
      size: number;
      lastUpdateTime: string;
    };
    inventory?: { entries: Array<{ id: string; v: string }> };
    history?: Array<Record<string, unknown>>;
    [key: string]: unknown;
  };
}

interface Answer<T = FluxObject> {
  status: number;
  contentType: string | null;
  body: T;
}

const configMap = (value: string) =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sim-config\n  namespace: default\ndata:\n  greeting: "${value}"\n`;

const deployment = (image: string) => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: sim-app
  namespace: default
  annotations:
    kubernetes.io/change-cause: image change
spec:
  template:
    spec:
      containers:
        - name: app
          image: ${image}
`;

const revisionOf = (sha: string) => `main@sha1:${sha}`;
const condition = (object: FluxObject, type: string) =>
  object.status.conditions?.find((c) => c.type === type);
const describeCondition = (c: FluxCondition | undefined) => (c ? `${c.status}/${c.reason}` : "-");

interface ObjectWatch {
  initial: FluxObject;
  events: Array<{ type: string; object: FluxObject }>;
  stop(): void;
}

/** One entry per version: what the lab spec's `statusSteps` compares, repeats dropped. */
function statusSteps(watch: ObjectWatch) {
  const steps: Array<Record<string, string | undefined>> = [];
  for (const object of [watch.initial, ...watch.events.map((e) => e.object)]) {
    const step = {
      ready: describeCondition(condition(object, "Ready")),
      reconciling: describeCondition(condition(object, "Reconciling")),
      healthy: describeCondition(condition(object, "Healthy")),
      lastAttemptedRevision: object.status.lastAttemptedRevision,
      lastAppliedRevision: object.status.lastAppliedRevision,
    };
    if (JSON.stringify(steps.at(-1)) !== JSON.stringify(step)) steps.push(step);
  }
  return steps;
}

function reconcilingMessages(watch: ObjectWatch): string[] {
  const messages: string[] = [];
  for (const { object } of watch.events) {
    const message = condition(object, "Reconciling")?.message;
    if (message !== undefined && messages.at(-1) !== message) messages.push(message);
  }
  return messages;
}

describe("FluxSimulator", function () {
  this.timeout(10_000);

  let fixture: GitopsFixture;
  let sim: FluxSimulator;
  let seed = "";

  async function api<T = FluxObject>(
    path: string,
    options: { method?: string; body?: string; contentType?: string; token?: string | null } = {},
  ): Promise<Answer<T>> {
    const headers: Record<string, string> = {};
    const token = options.token === undefined ? TOKEN : options.token;
    if (token !== null) headers["authorization"] = `Bearer ${token}`;
    if (options.contentType) headers["content-type"] = options.contentType;
    const response = await fetch(`${sim.url}${path}`, {
      method: options.method ?? "GET",
      headers,
      body: options.body,
    });
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // plain text answer
    }
    return { status: response.status, contentType: response.headers.get("content-type"), body: body as T };
  }

  const get = async (path: string) => {
    const answer = await api(path);
    expect(answer.status, JSON.stringify(answer.body)).to.equal(200);
    return answer.body;
  };
  const kustomization = (name: string) => get(`${KS_PATH}/${name}`);
  const gitRepository = (name: string) => get(`${GR_PATH}/${name}`);

  /** What `flux reconcile` does: a merge patch of the requestedAt annotation. */
  async function requestReconcile(path: string, requestedAt = new Date().toISOString()): Promise<string> {
    const answer = await api(path, {
      method: "PATCH",
      contentType: "application/merge-patch+json",
      body: JSON.stringify({ metadata: { annotations: { "reconcile.fluxcd.io/requestedAt": requestedAt } } }),
    });
    expect(answer.status, JSON.stringify(answer.body)).to.equal(200);
    return requestedAt;
  }

  /** `?watch=1&fieldSelector=metadata.name=<n>&resourceVersion=<rv>`, as the lab's FluxLab.watch does it. */
  async function watch(collection: string, name: string): Promise<ObjectWatch> {
    const initial = await get(`${collection}/${name}`);
    const events: ObjectWatch["events"] = [];
    const query = new URLSearchParams({
      watch: "1",
      fieldSelector: `metadata.name=${name}`,
      resourceVersion: initial.metadata.resourceVersion,
    });
    const req = request(`${sim.url}${collection}?${query.toString()}`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    await new Promise<void>((resolve, reject) => {
      req.once("error", reject);
      req.once("response", (res) => {
        let buffered = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          buffered += chunk;
          let newline: number;
          while ((newline = buffered.indexOf("\n")) >= 0) {
            events.push(JSON.parse(buffered.slice(0, newline)) as ObjectWatch["events"][number]);
            buffered = buffered.slice(newline + 1);
          }
        });
        res.on("error", () => undefined);
        resolve();
      });
      req.end();
    });
    req.on("error", () => undefined);
    return { initial, events, stop: () => req.destroy() };
  }

  before(async () => {
    fixture = await createGitopsFixture({
      ...defaultGitopsFiles,
      "flux/dev/configmap.yaml": configMap("hello"),
      "flux/health/configmap.yaml": configMap("healthy"),
      "flux/sf/configmap.yaml": configMap("sf"),
      "flux/broken/configmap.yaml": configMap("broken"),
    });
    seed = (await gitLog(fixture.bareDir))[0]?.sha ?? "";
    sim = new FluxSimulator({
      token: TOKEN,
      stepDelayMs: 1,
      healthCheckTimeoutMs: 150,
      gitRepositories: [
        { name: "apps", gitDir: fixture.bareDir, url: REPO_URL, secretRef: "apps-auth" },
        { name: "wrong-token", gitDir: fixture.bareDir, url: REPO_URL, authRefused: true },
        { name: "no-branch", gitDir: fixture.bareDir, url: REPO_URL, branch: "absent" },
        {
          name: "no-repo",
          gitDir: `${fixture.root}/repos/absent.git`,
          url: "http://git.example.invalid/absent.git",
        },
      ],
      kustomizations: [
        { name: "apps", source: "apps", path: "./flux/dev", timeout: "1m" },
        { name: "health", source: "apps", path: "./flux/health", wait: true, timeout: "5s" },
        { name: "sf", source: "apps", path: "./flux/sf", timeout: "1m" },
        { name: "broken", source: "apps", path: "./flux/broken", timeout: "1m" },
        { name: "no-path", source: "apps", path: "./flux/absent", timeout: "1m" },
      ],
      helmReleases: [
        {
          name: "carts",
          source: "apps",
          chart: "./charts/carts",
          valuesFiles: ["charts/carts/values-dev.yaml"],
          reconcileStrategy: "Revision",
          targetNamespace: "sockshop-dev",
        },
        {
          name: "orders",
          source: "apps",
          chart: "./charts/orders",
          valuesFiles: ["charts/orders/values-dev.yaml"],
          reconcileStrategy: "Revision",
          targetNamespace: "sockshop-dev",
          install: { disableWait: true },
          upgrade: { disableWait: true },
        },
        {
          name: "carts-pinned",
          source: "apps",
          chart: "./charts/carts",
          valuesFiles: ["charts/carts/values-production.yaml"],
          targetNamespace: "sockshop-production",
        },
      ],
    });
    await sim.start();
  });

  after(async () => {
    await sim.stop();
    await fixture.remove();
  });

  afterEach(() => {
    expect(sim.errors.map((e) => e.message)).to.deep.equal([]);
  });

  it("stores the seed commit as an artifact: revision, path, digest and conditions", async () => {
    const repo = await gitRepository("apps");
    const revision = revisionOf(seed);
    expect(repo.metadata.finalizers).to.deep.equal(["finalizers.fluxcd.io"]);
    expect(repo.spec).to.deep.equal({
      interval: "1h",
      ref: { branch: "main" },
      secretRef: { name: "apps-auth" },
      timeout: "60s",
      url: REPO_URL,
    });
    expect(repo.status.artifact?.revision).to.equal(revision);
    expect(repo.status.artifact?.path).to.equal(`gitrepository/flux-system/apps/${seed}.tar.gz`);
    expect(repo.status.artifact?.url).to.equal(
      `http://source-controller.flux-system.svc.cluster.local./gitrepository/flux-system/apps/${seed}.tar.gz`,
    );
    expect(repo.status.artifact?.digest).to.match(/^sha256:[0-9a-f]{64}$/);
    expect(repo.status.artifact?.size).to.be.greaterThan(0);
    expect(repo.status.observedGeneration).to.equal(1);
    const stored = `stored artifact for revision '${revision}'`;
    expect(repo.status.conditions?.map((c) => [c.type, c.status, c.reason, c.message])).to.deep.equal([
      ["Ready", "True", "Succeeded", stored],
      ["ArtifactInStorage", "True", "Succeeded", stored],
    ]);
  });

  it("applies it: Kustomization Ready, both revisions, inventory and history", async () => {
    const ks = await kustomization("apps");
    const revision = revisionOf(seed);
    expect(ks.spec).to.deep.equal({
      force: false,
      interval: "1h",
      path: "./flux/dev",
      prune: true,
      sourceRef: { kind: "GitRepository", name: "apps" },
      timeout: "1m",
    });
    expect(ks.status.lastAppliedRevision).to.equal(revision);
    expect(ks.status.lastAttemptedRevision).to.equal(revision);
    expect(ks.status.observedGeneration).to.equal(ks.metadata.generation);
    expect(ks.status.conditions).to.have.length(1);
    expect(condition(ks, "Ready")).to.include({
      status: "True",
      reason: "ReconciliationSucceeded",
      message: `Applied revision: ${revision}`,
      observedGeneration: 1,
    });
    expect(ks.status.inventory).to.deep.equal({
      entries: [{ id: "default_sim-config__ConfigMap", v: "v1" }],
    });
    expect(ks.status.history?.[0]).to.include({
      lastReconciledStatus: "ReconciliationSucceeded",
      totalReconciliations: 1,
    });
    expect(ks.status.history?.[0]?.["metadata"]).to.deep.equal({ revision });
    expect(ks.status.history?.[0]?.["digest"]).to.match(/^sha256:[0-9a-f]{64}$/);
    // wait is off: no Healthy condition at all. With wait on, Healthy passed.
    const health = await kustomization("health");
    expect(condition(health, "Healthy")).to.include({ status: "True", reason: "Succeeded" });
    expect(condition(health, "Healthy")?.message).to.match(/^Health check passed in [\d.]+(ms|s)$/);
    expect(health.status.conditions?.map((c) => c.type)).to.deep.equal(["Ready", "Healthy"]);
  });

  it("answers as kube-apiserver does: 401, 403, 404, 415, list and unknown paths", async () => {
    const unauthorized = await api(`${KS_PATH}/apps`, { token: "wrong" });
    expect(unauthorized.status).to.equal(401);
    expect(unauthorized.body).to.deep.equal({
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: "Unauthorized",
      reason: "Unauthorized",
      code: 401,
    });
    const anonymous = await api(`${KS_PATH}/apps`, { token: null });
    expect(anonymous.status).to.equal(403);
    expect(anonymous.body).to.deep.include({
      message:
        'kustomizations.kustomize.toolkit.fluxcd.io "apps" is forbidden: User "system:anonymous" cannot get resource ' +
        '"kustomizations" in API group "kustomize.toolkit.fluxcd.io" in the namespace "flux-system"',
      reason: "Forbidden",
      code: 403,
    });
    const missing = await api(`${KS_PATH}/x`);
    expect(missing.status).to.equal(404);
    expect(missing.contentType).to.equal("application/json");
    expect(JSON.stringify(missing.body)).to.equal(
      '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",' +
        '"message":"kustomizations.kustomize.toolkit.fluxcd.io \\"x\\" not found","reason":"NotFound",' +
        '"details":{"name":"x","group":"kustomize.toolkit.fluxcd.io","kind":"kustomizations"},"code":404}',
    );
    const missingRepo = await api(`${GR_PATH}/x`, {
      method: "PATCH",
      contentType: "application/merge-patch+json",
      body: "{}",
    });
    expect(missingRepo.status).to.equal(404);
    expect(missingRepo.body).to.deep.include({
      message: 'gitrepositories.source.toolkit.fluxcd.io "x" not found',
    });
    const strategic = await api(`${KS_PATH}/apps`, {
      method: "PATCH",
      contentType: "application/strategic-merge-patch+json",
      body: "{}",
    });
    expect(strategic.status).to.equal(415);
    expect(strategic.body).to.deep.equal({
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message:
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, " +
        "application/merge-patch+json, application/apply-patch+yaml",
      reason: "UnsupportedMediaType",
      code: 415,
    });
    const notJson = await api(`${KS_PATH}/apps`, {
      method: "PATCH",
      contentType: "application/merge-patch+json",
      body: "nope",
    });
    expect(notJson.status).to.equal(400);
    expect(notJson.body).to.deep.include({ reason: "BadRequest" });

    const list = await api<{
      kind: string;
      apiVersion: string;
      items: FluxObject[];
      metadata: Record<string, string>;
    }>(KS_PATH);
    expect(list.body.kind).to.equal("KustomizationList");
    expect(list.body.apiVersion).to.equal("kustomize.toolkit.fluxcd.io/v1");
    expect(list.body.items.map((item) => item.metadata.name)).to.deep.equal([
      "apps",
      "health",
      "sf",
      "broken",
      "no-path",
    ]);
    expect(list.body.items[0]?.kind).to.equal("Kustomization");
    expect(list.body.metadata).to.have.keys("continue", "resourceVersion");
    const unknown = await api("/apis/helm.toolkit.fluxcd.io/v2beta1/namespaces/flux-system/helmreleases/x");
    // v2beta1 is not served (the lab's CRDs serve v2 only, as here).
    expect(unknown.status).to.equal(404);
    expect(unknown.body).to.equal("404 page not found\n");
  });

  it("serialises objects as the API server does: keys sorted, every level", async () => {
    const text = await (
      await fetch(`${sim.url}${KS_PATH}/apps`, { headers: { authorization: `Bearer ${TOKEN}` } })
    ).text();
    expect(
      text.startsWith('{"apiVersion":"kustomize.toolkit.fluxcd.io/v1","kind":"Kustomization","metadata":{'),
    ).to.equal(true);
    expect(text).to.include('{"lastTransitionTime":');
  });

  it("installs a HelmRelease from a git chart: InstallSucceeded, chart version with the commit, history", async () => {
    const hr = await get(`${HR_PATH}/carts`);
    // source-controller appends the HelmChart's generation when valuesFiles are set (lab: 0.1.0+ad8065430ab9.1).
    const chartVersion = `0.1.0+${seed.slice(0, 12)}.1`;
    const message = `Helm install succeeded for release sockshop-dev/sockshop-dev-carts.v1 with chart carts@${chartVersion}`;
    expect(hr.status.conditions?.map((c) => [c.type, c.status, c.reason, c.message])).to.deep.equal([
      ["Ready", "True", "InstallSucceeded", message],
      ["Released", "True", "InstallSucceeded", message],
    ]);
    expect(hr.status).to.include({
      helmChart: "flux-system/flux-system-carts",
      lastAttemptedRevision: chartVersion,
      lastAttemptedReleaseAction: "install",
      lastAttemptedGeneration: 1,
      observedGeneration: 1,
      storageNamespace: "flux-system",
    });
    expect(hr.status.history?.[0]).to.include({
      chartName: "carts",
      chartVersion,
      name: "sockshop-dev-carts",
      namespace: "sockshop-dev",
      status: "deployed",
      version: 1,
    });
    expect(hr.spec["chart"]).to.deep.equal({
      spec: {
        chart: "./charts/carts",
        interval: "1h",
        reconcileStrategy: "Revision",
        sourceRef: { kind: "GitRepository", name: "apps" },
        valuesFiles: ["charts/carts/values-dev.yaml"],
        version: "*",
      },
    });
  });

  /**
   * Commits a new carts tag for the dev values, asks the GitRepository to reconcile, and records every HelmRelease
   * version until `done` holds for one; resolves with the chart version of that commit and the versions seen.
   */
  async function upgradeCarts(
    tag: string,
    done: (object: FluxObject, chartVersion: string) => boolean,
  ): Promise<{ chartVersion: string; events: Array<{ object: FluxObject }> }> {
    const sha = await commitToBare(
      fixture.bareDir,
      {
        "charts/carts/values-dev.yaml": `image:\n  repository: docker.io/keptnexamples/carts\n  tag: "${tag}"\n`,
      },
      `sim: carts ${tag}`,
    );
    const chartVersion = `0.1.0+${sha.slice(0, 12)}.1`;
    const hrWatch = await watch(HR_PATH, "carts");
    try {
      await requestReconcile(`${GR_PATH}/apps`);
      await waitFor(() => hrWatch.events.some((e) => done(e.object, chartVersion)), {
        timeoutMs: 5_000,
        what: `carts at ${tag}`,
      });
    } finally {
      hrWatch.stop();
    }
    return { chartVersion, events: hrWatch.events };
  }

  it("upgrades it on a new commit in the lab's order: Ready=True before the history, Reconciling last", async () => {
    const { chartVersion, events } = await upgradeCarts(
      "0.13.2",
      (object, version) =>
        object.status.history?.[0]?.["chartVersion"] === version && !condition(object, "Reconciling"),
    );
    const steps = events.map(({ object }) => ({
      ready: describeCondition(condition(object, "Ready")),
      reconciling: condition(object, "Reconciling")?.message ?? "-",
      lastAttemptedRevision: object.status.lastAttemptedRevision,
      history: object.status.history
        ?.map((h) => `${String(h["status"])} v${String(h["version"])}`)
        .join(", "),
    }));
    const old = `0.1.0+${seed.slice(0, 12)}.1`;
    expect(steps).to.deep.equal(helmUpgradeSteps(old, chartVersion));
    expect(condition(events.at(-1)?.object as FluxObject, "Ready")?.message).to.equal(
      `Helm upgrade succeeded for release sockshop-dev/sockshop-dev-carts.v2 with chart carts@${chartVersion}`,
    );
  });

  it("fails an upgrade the API server refuses: UpgradeFailed, then Stalled RetriesExceeded", async () => {
    const sha = await commitToBare(
      fixture.bareDir,
      {
        "charts/carts/values-dev.yaml":
          'image:\n  repository: docker.io/keptnexamples/carts\n  tag: "0.13.3-syncfail"\n',
      },
      "sim: carts refused",
    );
    const chartVersion = `0.1.0+${sha.slice(0, 12)}.1`;
    await requestReconcile(`${GR_PATH}/apps`);
    const failed = await waitFor(
      async () => {
        const hr = await get(`${HR_PATH}/carts`);
        return condition(hr, "Stalled") ? hr : undefined;
      },
      { timeoutMs: 5_000, what: "carts stalled" },
    );
    const message =
      `Helm upgrade failed for release sockshop-dev/sockshop-dev-carts with chart carts@${chartVersion}: ` +
      'cannot patch "sockshop-dev-carts" with kind Deployment: deployments.apps "sockshop-dev-carts" is forbidden: ' +
      "ValidatingAdmissionPolicy 'lab-refuse-syncfail-images' with binding 'lab-refuse-syncfail-images' denied " +
      "request: the lab refuses images tagged syncfail";
    expect(failed.status.conditions?.map((c) => [c.type, c.status, c.reason, c.message])).to.deep.equal([
      ["Stalled", "True", "RetriesExceeded", "Failed to upgrade after 1 attempt(s)"],
      ["Ready", "False", "UpgradeFailed", message],
      ["Released", "False", "UpgradeFailed", message],
    ]);
    expect(failed.status).to.include({
      failures: 1,
      upgradeFailures: 1,
      lastAttemptedRevision: chartVersion,
    });
    expect(failed.status.history?.[0]).to.include({ status: "failed", version: 3, chartVersion });
  });

  it("recovers on the next commit: failure counts cleared with the new attempt, history cut at the last good one", async () => {
    const { chartVersion, events } = await upgradeCarts(
      "0.13.4",
      (object, version) =>
        object.status.history?.[0]?.["chartVersion"] === version &&
        object.status.history.length === 3 &&
        !condition(object, "Reconciling"),
    );
    // As helm-controller v1.4.3 in the lab: the counts go with the version that names the new attempt.
    const attempt = events.find((e) => e.object.status.lastAttemptedRevision === chartVersion);
    expect(attempt?.object.status).to.not.have.any.keys("failures", "upgradeFailures");
    const histories = events.map((e) =>
      e.object.status.history?.map((h) => `${String(h["status"])} v${String(h["version"])}`).join(", "),
    );
    expect(histories).to.include("deployed v4, failed v3, superseded v2, superseded v1");
    expect(histories.at(-1)).to.equal("deployed v4, failed v3, superseded v2");
  });

  it("releases a hang tag at once with disableWait, and keeps a ChartVersion chart at <version>+<generation>", async () => {
    const sha = await commitToBare(
      fixture.bareDir,
      {
        "charts/orders/values-dev.yaml":
          "image:\n  repository: docker.io/keptnexamples/orders\n  tag: 0.13.2-hang\n",
      },
      "sim: orders hang",
    );
    const chartVersion = `0.1.0+${sha.slice(0, 12)}.1`;
    await requestReconcile(`${GR_PATH}/apps`);
    const orders = await waitFor(
      async () => {
        const hr = await get(`${HR_PATH}/orders`);
        return hr.status.lastAttemptedRevision === chartVersion && !condition(hr, "Reconciling")
          ? hr
          : undefined;
      },
      { timeoutMs: 5_000, what: "orders upgraded" },
    );
    // Helm does not wait for the Deployment: no "context deadline exceeded", the release is deployed.
    expect(orders.status.history?.[0]).to.include({ status: "deployed", chartVersion });
    expect(orders.spec).to.deep.include({ install: { disableWait: true }, upgrade: { disableWait: true } });
    // reconcileStrategy ChartVersion (the CRD default) with valuesFiles: only the HelmChart's generation (lab).
    const pinned = await get(`${HR_PATH}/carts-pinned`);
    expect(pinned.status.history?.map((h) => [h["chartVersion"], h["status"]])).to.deep.equal([
      ["0.1.0+1", "deployed"],
    ]);
  });

  it("walks a new revision through the GitRepository and the Kustomization in the lab's order", async () => {
    const before = await kustomization("apps");
    const repoBefore = await gitRepository("apps");
    const oldRevision = before.status.lastAppliedRevision;
    const sha = await commitToBare(
      fixture.bareDir,
      { "flux/dev/configmap.yaml": configMap("again") },
      "sim: greeting",
    );
    const revision = revisionOf(sha);
    const repoWatch = await watch(GR_PATH, "apps");
    const ksWatch = await watch(KS_PATH, "apps");
    const requestedAt = new Date().toISOString();
    try {
      await requestReconcile(`${GR_PATH}/apps`, requestedAt);
      await waitFor(() => ksWatch.events.some((e) => e.object.status.lastAppliedRevision === revision), {
        timeoutMs: 5_000,
        what: "Kustomization apps at the new revision",
      });
    } finally {
      repoWatch.stop();
      ksWatch.stop();
    }

    // GitRepository: the annotation write, then the controller's versions.
    const repoVersions = repoWatch.events.map(({ object }) => ({
      conditions: (object.status.conditions ?? []).map(
        (c) => `${c.type}=${c.status}/${c.reason}: ${c.message}`,
      ),
      artifact: object.status.artifact?.revision,
      handled: object.status.lastHandledReconcileAt,
    }));
    const stored = (r: string) => `stored artifact for revision '${r}'`;
    const old = repoBefore.status.artifact?.revision ?? "";
    const previouslyHandled = repoBefore.status.lastHandledReconcileAt;
    const building = `building artifact: new upstream revision '${revision}'`;
    expect(repoVersions).to.deep.equal([
      {
        conditions: [
          `Ready=True/Succeeded: ${stored(old)}`,
          `ArtifactInStorage=True/Succeeded: ${stored(old)}`,
        ],
        artifact: old,
        handled: previouslyHandled,
      },
      {
        conditions: [
          "Reconciling=True/Progressing: reconciliation in progress",
          `Ready=True/Succeeded: ${stored(old)}`,
          `ArtifactInStorage=True/Succeeded: ${stored(old)}`,
        ],
        artifact: old,
        handled: previouslyHandled,
      },
      {
        conditions: [
          `Reconciling=True/Progressing: ${building}`,
          `Ready=Unknown/Progressing: ${building}`,
          `ArtifactInStorage=True/Succeeded: ${stored(old)}`,
          `ArtifactOutdated=True/NewRevision: new upstream revision '${revision}'`,
        ],
        artifact: old,
        handled: previouslyHandled,
      },
      // Conditions first: Ready names the new revision while status.artifact is still the old one.
      {
        conditions: [
          `Ready=True/Succeeded: ${stored(revision)}`,
          `ArtifactInStorage=True/Succeeded: ${stored(revision)}`,
        ],
        artifact: old,
        handled: previouslyHandled,
      },
      {
        conditions: [
          `Ready=True/Succeeded: ${stored(revision)}`,
          `ArtifactInStorage=True/Succeeded: ${stored(revision)}`,
        ],
        artifact: revision,
        handled: requestedAt,
      },
    ]);

    // Kustomization: the steps and messages test/lab/flux.real.spec.ts pins on the real controller.
    expect(statusSteps(ksWatch)).to.deep.equal([
      {
        ready: "True/ReconciliationSucceeded",
        reconciling: "-",
        healthy: "-",
        lastAttemptedRevision: oldRevision,
        lastAppliedRevision: oldRevision,
      },
      ...kustomizationApplySteps(oldRevision, revision),
    ]);
    expect(reconcilingMessages(ksWatch)).to.deep.equal(kustomizationReconcilingMessages(revision));
    const inProgress = ksWatch.events.find(({ object }) => condition(object, "Ready")?.status === "Unknown");
    expect(condition(inProgress?.object ?? before, "Ready")?.message).to.equal("Reconciliation in progress");
    expect(inProgress?.object.status.conditions?.map((c) => c.type)).to.deep.equal(["Reconciling", "Ready"]);
    // Triggered by the source, not by annotation: lastHandledReconcileAt is left alone.
    expect(ksWatch.events.at(-1)?.object.status.lastHandledReconcileAt).to.equal(
      before.status.lastHandledReconcileAt,
    );
    // Every version once, resourceVersion strictly growing.
    const versions = ksWatch.events.map((e) => Number(e.object.metadata.resourceVersion));
    expect(versions).to.deep.equal([...versions].sort((a, b) => a - b));
    expect(new Set(versions).size).to.equal(versions.length);
    expect(ksWatch.events.every((e) => e.type === "MODIFIED")).to.equal(true);
  });

  it("echoes requestedAt in lastHandledReconcileAt and keeps the generation; a spec change bumps it", async () => {
    const before = await kustomization("apps");
    const requestedAt = await requestReconcile(`${KS_PATH}/apps`, "2024-07-12T08:56:29.512345678Z");
    const after = await waitFor(
      async () => {
        const ks = await kustomization("apps");
        return ks.status.lastHandledReconcileAt === requestedAt ? ks : undefined;
      },
      { timeoutMs: 5_000, what: "lastHandledReconcileAt echoed" },
    );
    expect(after.metadata.generation).to.equal(before.metadata.generation);
    expect(after.metadata.annotations).to.deep.equal({ "reconcile.fluxcd.io/requestedAt": requestedAt });
    expect(Number(after.metadata.resourceVersion)).to.be.greaterThan(Number(before.metadata.resourceVersion));
    // Same revision again: the same history entry counts up.
    expect(after.status.history?.[0]?.["totalReconciliations"]).to.equal(
      Number(before.status.history?.[0]?.["totalReconciliations"]) + 1,
    );

    // The same value again is no change: no write, no new resourceVersion, no reconcile.
    const current = await kustomization("apps");
    const again = await api(`${KS_PATH}/apps`, {
      method: "PATCH",
      contentType: "application/merge-patch+json",
      body: JSON.stringify({
        metadata: { annotations: { "reconcile.fluxcd.io/requestedAt": requestedAt } },
        status: { x: 1 },
      }),
    });
    expect(again.body.metadata.resourceVersion).to.equal(current.metadata.resourceVersion);

    // json-patch works too (client-node's default for custom objects); a spec change is a new generation.
    const patched = await api(`${KS_PATH}/apps`, {
      method: "PATCH",
      contentType: "application/json-patch+json",
      body: JSON.stringify([{ op: "replace", path: "/spec/timeout", value: "2m" }]),
    });
    expect(patched.status, JSON.stringify(patched.body)).to.equal(200);
    expect(patched.body.metadata.generation).to.equal(before.metadata.generation + 1);
    expect(patched.body.status.observedGeneration).to.equal(before.metadata.generation);
    const reconciled = await waitFor(
      async () => {
        const ks = await kustomization("apps");
        return ks.status.observedGeneration === ks.metadata.generation ? ks : undefined;
      },
      { timeoutMs: 5_000, what: "the new generation reconciled" },
    );
    expect(condition(reconciled, "Ready")?.observedGeneration).to.equal(reconciled.metadata.generation);

    const conflict = await api(`${KS_PATH}/apps`, {
      method: "PATCH",
      contentType: "application/merge-patch+json",
      body: JSON.stringify({ metadata: { resourceVersion: "1", annotations: { a: "b" } } }),
    });
    expect(conflict.status).to.equal(409);
    expect(conflict.body).to.deep.include({ reason: "Conflict" });
  });

  it("fails a health check: Ready=False HealthCheckFailed after the timeout, lastAppliedRevision stays", async () => {
    const before = await kustomization("health");
    const oldRevision = before.status.lastAppliedRevision;
    const sha = await commitToBare(
      fixture.bareDir,
      { "flux/health/deployment.yaml": deployment("docker.io/keptnexamples/carts:0.13.2-crashloop") },
      "sim: a Deployment that never becomes ready",
    );
    const revision = revisionOf(sha);
    const timeoutText = "with a timeout of 30s";
    const ksWatch = await watch(KS_PATH, "health");
    try {
      await requestReconcile(`${GR_PATH}/apps`);
      await waitFor(
        () =>
          ksWatch.events.some(
            (e) => e.object.status.history?.[0]?.["lastReconciledStatus"] === "HealthCheckFailed",
          ),
        { timeoutMs: 5_000, what: "health failed" },
      );
    } finally {
      ksWatch.stop();
    }
    const failed = ksWatch.events.at(-1)?.object as FluxObject;
    expect(failed.status.lastAttemptedRevision).to.equal(revision);
    expect(failed.status.lastAppliedRevision).to.equal(oldRevision);
    expect(condition(failed, "Ready")).to.include({ status: "False", reason: "HealthCheckFailed" });
    const cause = "timeout waiting for: [Deployment/default/sim-app status: 'InProgress']";
    expect(condition(failed, "Ready")?.message).to.match(/^health check failed after 30\.\d+s: /);
    expect(condition(failed, "Ready")?.message).to.satisfy((m: string) => m.endsWith(`s: ${cause}`));
    expect(condition(failed, "Healthy")).to.include({
      status: "False",
      reason: "HealthCheckFailed",
      message: cause,
    });
    expect(condition(failed, "Reconciling")).to.include({
      status: "True",
      reason: "ProgressingWithRetry",
      message: `Running health checks for revision ${revision} ${timeoutText}`,
    });
    expect(failed.status.conditions?.map((c) => c.type)).to.deep.equal(["Reconciling", "Ready", "Healthy"]);
    expect(failed.status.observedGeneration).to.equal(failed.metadata.generation);
    expect(failed.status.history?.[0]?.["metadata"]).to.deep.equal({ revision });
    expect(failed.status.inventory?.entries.map((e) => e.id)).to.include("default_sim-app_apps_Deployment");
    expect(statusSteps(ksWatch).slice(1)).to.deep.equal([
      {
        ready: "Unknown/Progressing",
        reconciling: "True/Progressing",
        healthy: "True/Succeeded",
        lastAttemptedRevision: oldRevision,
        lastAppliedRevision: oldRevision,
      },
      {
        ready: "Unknown/Progressing",
        reconciling: "True/Progressing",
        healthy: "True/Succeeded",
        lastAttemptedRevision: revision,
        lastAppliedRevision: oldRevision,
      },
      {
        ready: "Unknown/Progressing",
        reconciling: "True/Progressing",
        healthy: "Unknown/Progressing",
        lastAttemptedRevision: revision,
        lastAppliedRevision: oldRevision,
      },
      {
        ready: "False/HealthCheckFailed",
        reconciling: "True/ProgressingWithRetry",
        healthy: "False/HealthCheckFailed",
        lastAttemptedRevision: revision,
        lastAppliedRevision: oldRevision,
      },
    ]);
    expect(reconcilingMessages(ksWatch)).to.deep.equal([
      `Fetching manifests for revision ${revision} ${timeoutText}`,
      `Building manifests for revision ${revision} ${timeoutText}`,
      `Detecting drift for revision ${revision} ${timeoutText}`,
      `Running health checks for revision ${revision} ${timeoutText}`,
    ]);
  });

  it("fails the apply of a refused object: Ready=False ReconciliationFailed with the admission message", async () => {
    const before = await kustomization("sf");
    const sha = await commitToBare(
      fixture.bareDir,
      { "flux/sf/deployment.yaml": deployment("docker.io/keptnexamples/carts:0.13.2-syncfail") },
      "sim: refused",
    );
    await requestReconcile(`${GR_PATH}/apps`);
    const failed = await waitFor(
      async () => {
        const ks = await kustomization("sf");
        return ks.status.history?.[0]?.["lastReconciledStatus"] === "ReconciliationFailed" ? ks : undefined;
      },
      { timeoutMs: 5_000, what: "sf failed" },
    );
    expect(failed.status.lastAttemptedRevision).to.equal(revisionOf(sha));
    expect(failed.status.lastAppliedRevision).to.equal(before.status.lastAppliedRevision);
    expect(failed.status.conditions?.map((c) => [c.type, c.status, c.reason, c.message])).to.deep.equal([
      [
        "Reconciling",
        "True",
        "ProgressingWithRetry",
        `Detecting drift for revision ${revisionOf(sha)} with a timeout of 1m0s`,
      ],
      [
        "Ready",
        "False",
        "ReconciliationFailed",
        'Deployment/default/sim-app dry-run failed (Invalid): deployments.apps "sim-app" is forbidden: ' +
          "ValidatingAdmissionPolicy 'lab-refuse-syncfail-images' with binding 'lab-refuse-syncfail-images' denied " +
          "request: the lab refuses images tagged syncfail\n",
      ],
    ]);
    expect(failed.status.inventory).to.deep.equal(before.status.inventory);
  });

  it("fails a build after lastAttemptedRevision (BuildFailed) and a missing path before it (ArtifactFailed)", async () => {
    const before = await kustomization("broken");
    const sha = await commitToBare(
      fixture.bareDir,
      { "flux/broken/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n" },
      "sim: not YAML",
    );
    const revision = revisionOf(sha);
    await requestReconcile(`${GR_PATH}/apps`);
    const broken = await waitFor(
      async () => {
        const ks = await kustomization("broken");
        return condition(ks, "Ready")?.reason === "BuildFailed" ? ks : undefined;
      },
      { timeoutMs: 5_000, what: "broken failed" },
    );
    expect(broken.status.lastAttemptedRevision).to.equal(revision);
    expect(broken.status.lastAppliedRevision).to.equal(before.status.lastAppliedRevision);
    expect(condition(broken, "Ready")?.message).to.match(
      /^failed to decode Kubernetes YAML from \/tmp\/kustomization-\d+\/flux\/broken\/configmap\.yaml: MalformedYAMLError: yaml: line \d+: /,
    );
    expect(condition(broken, "Reconciling")).to.include({
      reason: "ProgressingWithRetry",
      message: `Building manifests for revision ${revision} with a timeout of 1m0s`,
    });

    const noPath = await kustomization("no-path");
    expect(condition(noPath, "Ready")).to.include({ status: "False", reason: "ArtifactFailed" });
    expect(condition(noPath, "Ready")?.message).to.match(
      /^kustomization path not found: stat \/tmp\/kustomization-\d+\/flux\/absent: no such file or directory$/,
    );
    expect(condition(noPath, "Reconciling")?.reason).to.equal("ProgressingWithRetry");
    expect(noPath.status).to.not.have.any.keys("lastAttemptedRevision", "lastAppliedRevision");
    expect(noPath.status.observedGeneration).to.equal(-1);
  });

  it("reports git failures on the GitRepository: GitOperationFailed, FetchFailed, no artifact", async () => {
    const wrongToken = await gitRepository("wrong-token");
    expect(wrongToken.status.artifact).to.equal(undefined);
    expect(wrongToken.status.observedGeneration).to.equal(-1);
    const message = `failed to checkout and determine revision: unable to clone '${REPO_URL}': authentication required: authentication required\n`;
    expect(wrongToken.status.conditions?.map((c) => [c.type, c.status, c.reason, c.message])).to.deep.equal([
      ["Reconciling", "True", "ProgressingWithRetry", "building artifact"],
      ["Ready", "False", "GitOperationFailed", message],
      ["FetchFailed", "True", "GitOperationFailed", message],
    ]);
    expect(condition(await gitRepository("no-branch"), "Ready")?.message).to.equal(
      `failed to checkout and determine revision: unable to clone '${REPO_URL}': couldn't find remote ref "refs/heads/absent"`,
    );
    expect(condition(await gitRepository("no-repo"), "Ready")?.message).to.equal(
      "failed to checkout and determine revision: unable to clone 'http://git.example.invalid/absent.git': repository not found: ",
    );

    // Credentials fixed: the next requested reconcile stores the artifact and clears FetchFailed.
    sim.refuseGitAuth("wrong-token", false);
    await requestReconcile(`${GR_PATH}/wrong-token`);
    const fixed = await waitFor(
      async () => {
        const repo = await gitRepository("wrong-token");
        return repo.status.artifact ? repo : undefined;
      },
      { timeoutMs: 5_000, what: "wrong-token fixed" },
    );
    expect(fixed.status.conditions?.map((c) => c.type)).to.deep.equal(["Ready", "ArtifactInStorage"]);
    expect(fixed.status.observedGeneration).to.equal(1);
  });

  it("watches like the API server: ADDED for the current objects without a resourceVersion, then changes", async () => {
    const events: Array<{ type: string; object: FluxObject }> = [];
    const controller = new AbortController();
    const response = await fetch(`${sim.url}${KS_PATH}?watch=true`, {
      headers: { authorization: `Bearer ${TOKEN}` },
      signal: controller.signal,
    });
    expect(response.status).to.equal(200);
    expect(response.headers.get("content-type")).to.equal("application/json");
    const reader = response.body?.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    const reading = (async () => {
      for (;;) {
        const chunk = await reader?.read().catch(() => undefined);
        if (!chunk || chunk.done) return;
        buffered += decoder.decode(chunk.value, { stream: true });
        let newline: number;
        while ((newline = buffered.indexOf("\n")) >= 0) {
          events.push(JSON.parse(buffered.slice(0, newline)) as { type: string; object: FluxObject });
          buffered = buffered.slice(newline + 1);
        }
      }
    })();
    try {
      await waitFor(() => events.length >= 5, { timeoutMs: 2_000, what: "the ADDED events" });
      expect(events.slice(0, 5).map((e) => `${e.type} ${e.object.metadata.name}`)).to.deep.equal([
        "ADDED apps",
        "ADDED health",
        "ADDED sf",
        "ADDED broken",
        "ADDED no-path",
      ]);
      const requestedAt = await requestReconcile(`${KS_PATH}/no-path`, "watch-test");
      await waitFor(
        () =>
          events.some((e) => e.type === "MODIFIED" && e.object.status.lastHandledReconcileAt === requestedAt),
        { timeoutMs: 2_000, what: "the MODIFIED events" },
      );
    } finally {
      controller.abort();
      await reading;
    }
    const stale = await api(`${KS_PATH}?watch=1&resourceVersion=abc`);
    expect(stale.status).to.equal(500);
  });

  it("formats and reads Go durations as the controllers print them", () => {
    expect(formatGoDuration(60_000)).to.equal("1m0s");
    expect(formatGoDuration(30_000)).to.equal("30s");
    expect(formatGoDuration(3_600_000)).to.equal("1h0m0s");
    expect(formatGoDuration(408.098949)).to.equal("408.098949ms");
    expect(goDurationMs("1m30s")).to.equal(90_000);
    expect(goDurationMs("500ms")).to.equal(500);
    expect(goDurationMs("soon")).to.equal(undefined);
  });
});
