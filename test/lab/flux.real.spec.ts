import { expect } from "chai";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GitHttpServer } from "../support/git-http-server.js";
import {
  commitToBare,
  createGitopsFixture,
  defaultGitopsFiles,
  gitLog,
  type GitopsFixture,
} from "../support/gitops-fixture.js";
import { waitFor } from "../support/wait.js";
import {
  FLUX_LAB_BINARIES,
  FLUX_NAMESPACE,
  FluxLab,
  fluxCondition,
  type FluxCondition,
  type KustomizationObject,
  type ObjectWatch,
} from "./flux-lab.js";
import { KubeLab } from "./kube-lab.js";
import { requireLabBinaries } from "./lab-paths.js";
import { kustomizationApplySteps, kustomizationReconcilingMessages } from "../support/flux-pins.js";

// Pins what the real Flux controllers (source-controller and kustomize-controller v1.9.6, built by
// `npm run lab:build`) write into the status of GitRepository and Kustomization objects, against a real
// kube-apiserver without nodes and a git repository served over smart HTTP with a token. The Flux support of the
// service and its Flux simulator rely on these shapes; docs/testing.md ("Flux in the lab") lists them.

const configMap = (data: Record<string, string>) => `apiVersion: v1
kind: ConfigMap
metadata:
  name: flux-lab-config
  namespace: default
data:
${Object.entries(data)
  .map(([key, value]) => `  ${key}: "${value}"`)
  .join("\n")}
`;

const healthMarker = `apiVersion: v1
kind: ConfigMap
metadata:
  name: flux-lab-health-marker
  namespace: default
data:
  purpose: "a first revision that is healthy at once"
`;

/** A Deployment never becomes ready here: no controller-manager and no nodes, so kstatus says InProgress. */
const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: flux-lab-app
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels:
      app: flux-lab-app
  template:
    metadata:
      labels:
        app: flux-lab-app
    spec:
      containers:
        - name: app
          image: docker.io/keptnexamples/carts:0.13.1
`;

const SHA = /^[0-9a-f]{40}$/;
const revisionOf = (sha: string) => `main@sha1:${sha}`;

/** The part of a Kustomization status the sequence tests look at, one entry per version written. */
interface StatusStep {
  ready: string;
  reconciling: string;
  healthy: string;
  lastAttemptedRevision: string | undefined;
  lastAppliedRevision: string | undefined;
}

const describeCondition = (condition: FluxCondition | undefined) =>
  condition ? `${condition.status}/${condition.reason}` : "-";

/** The initial object and every version after it, reduced to `StatusStep`s; repeats of a step are dropped. */
function statusSteps(watch: ObjectWatch<KustomizationObject>): StatusStep[] {
  const steps: StatusStep[] = [];
  for (const object of [watch.initial, ...watch.changes.map((change) => change.object)]) {
    const step: StatusStep = {
      ready: describeCondition(fluxCondition(object, "Ready")),
      reconciling: describeCondition(fluxCondition(object, "Reconciling")),
      healthy: describeCondition(fluxCondition(object, "Healthy")),
      lastAttemptedRevision: object.status?.lastAttemptedRevision,
      lastAppliedRevision: object.status?.lastAppliedRevision,
    };
    const previous = steps.at(-1);
    if (!previous || JSON.stringify(previous) !== JSON.stringify(step)) steps.push(step);
  }
  return steps;
}

/** The Reconciling messages in the order they were written, each once. */
function reconcilingMessages(watch: ObjectWatch<KustomizationObject>): string[] {
  const messages: string[] = [];
  for (const { object } of watch.changes) {
    const message = fluxCondition(object, "Reconciling")?.message;
    if (message !== undefined && messages.at(-1) !== message) messages.push(message);
  }
  return messages;
}

/**
 * What follows "health check failed after 30.0…s: " in a HealthCheckFailed message. The real controller words it
 * two ways, depending on whether the status poller or its client's rate limiter notices the deadline first: the
 * objects still in progress, or a rate limiter error with no object named. Only the reason is dependable.
 */
function healthCheckCause(message: string | undefined): string {
  const match = /^health check failed after 30\.\d+s: (.*)$/s.exec(message ?? "");
  expect(match, `a health check failure: ${message}`).to.not.equal(null);
  const cause = match?.[1] ?? "";
  expect(cause).to.satisfy(
    (text: string) =>
      text === "timeout waiting for: [Deployment/default/flux-lab-app status: 'InProgress']" ||
      /^client rate limiter Wait returned an error: .*context deadline/.test(text),
    `the cause of the health check failure: ${cause}`,
  );
  return cause;
}

describe("Flux in the lab: the real source-controller and kustomize-controller", function () {
  this.timeout(60_000);

  let dir: string | undefined;
  let kube: KubeLab | undefined;
  let flux: FluxLab | undefined;
  let fixture: GitopsFixture | undefined;
  let gitServer: GitHttpServer | undefined;
  let seedSha = "";
  const token = randomBytes(16).toString("hex");

  const lab = () => {
    if (!flux || !kube || !fixture || !gitServer) throw new Error("the lab did not start");
    return { flux, kube, fixture, gitServer };
  };

  before(async function () {
    this.timeout(150_000);
    await requireLabBinaries([...FLUX_LAB_BINARIES]);
    dir = await mkdtemp(join(tmpdir(), "lab-flux-"));
    fixture = await createGitopsFixture({
      ...defaultGitopsFiles,
      "flux/dev/configmap.yaml": configMap({ greeting: "hello", stage: "dev" }),
      "flux/health/marker.yaml": healthMarker,
      // No metadata.name: kustomize build refuses it.
      "flux/broken/nameless.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: default\n",
    });
    seedSha = (await gitLog(fixture.bareDir))[0]?.sha ?? "";
    gitServer = await GitHttpServer.start({ projectRoot: join(fixture.root, "repos"), token });
    kube = await KubeLab.start(dir);
    flux = await FluxLab.start(kube, dir);
  });

  after(async () => {
    await flux?.stop();
    await kube?.stop();
    await gitServer?.stop();
    await fixture?.remove();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A GitRepository over the fixture with the right token, and a Kustomization on `path`; both Ready on the seed. */
  async function startPipeline(name: string, path: string, extra: { wait?: boolean; timeout?: string } = {}) {
    const { flux, gitServer } = lab();
    await flux.createGitRepository({
      name,
      url: gitServer.repoUrl("gitops.git"),
      username: gitServer.username,
      password: token,
    });
    await flux.createKustomization({ name, source: name, path, prune: true, timeout: "1m", ...extra });
    return waitFor(
      async () => {
        const ks = await flux.kustomization(name);
        return fluxCondition(ks, "Ready")?.status === "True" && ks.status?.lastAppliedRevision
          ? ks
          : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100, what: `Kustomization ${name} Ready on the seed commit` },
    );
  }

  it("fetches a pushed commit: GitRepository artifact and conditions", async () => {
    const { flux, fixture } = lab();
    const first = await startPipeline("apps", "./flux/dev");
    expect(seedSha).to.match(SHA);
    expect(first.status?.lastAppliedRevision).to.equal(revisionOf(seedSha));

    const sha = await commitToBare(
      fixture.bareDir,
      { "flux/dev/configmap.yaml": configMap({ greeting: "hello again", stage: "dev" }) },
      "flux lab: change the greeting",
    );
    const requestedAt = await flux.requestReconcile("GitRepository", "apps");
    const repo = await waitFor(
      async () => {
        const current = await flux.gitRepository("apps");
        return current.status?.lastHandledReconcileAt === requestedAt &&
          current.status.artifact?.revision === revisionOf(sha)
          ? current
          : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 50, what: "GitRepository apps at the new commit" },
    );

    const artifact = repo.status?.artifact;
    expect(artifact?.revision).to.equal(`main@sha1:${sha}`);
    expect(artifact?.digest).to.match(/^sha256:[0-9a-f]{64}$/);
    expect(artifact?.path).to.equal(`gitrepository/${FLUX_NAMESPACE}/apps/${sha}.tar.gz`);
    expect(artifact?.url).to.equal(`${flux.storageUrl}/gitrepository/${FLUX_NAMESPACE}/apps/${sha}.tar.gz`);
    expect(artifact?.size).to.be.a("number").and.to.be.greaterThan(0);
    expect(Number.isNaN(Date.parse(artifact?.lastUpdateTime ?? "")), "lastUpdateTime is a date").to.equal(
      false,
    );
    expect(repo.status?.observedGeneration).to.equal(repo.metadata.generation);

    const stored = `stored artifact for revision 'main@sha1:${sha}'`;
    expect(fluxCondition(repo, "Ready")).to.include({ status: "True", reason: "Succeeded", message: stored });
    expect(fluxCondition(repo, "ArtifactInStorage")).to.include({
      status: "True",
      reason: "Succeeded",
      message: stored,
    });
    expect(fluxCondition(repo, "Reconciling")).to.equal(undefined);
    expect(fluxCondition(repo, "FetchFailed")).to.equal(undefined);
    expect(fluxCondition(repo, "ArtifactOutdated")).to.equal(undefined);
  });

  it("applies it: Kustomization revisions, Ready message, lastHandledReconcileAt and the object itself", async () => {
    const { flux, kube } = lab();
    const repo = await flux.gitRepository("apps");
    const revision = repo.status?.artifact?.revision ?? "";
    expect(revision).to.match(/^main@sha1:[0-9a-f]{40}$/);

    const requestedAt = await flux.requestReconcile("Kustomization", "apps");
    const ks = await waitFor(
      async () => {
        const current = await flux.kustomization("apps");
        return current.status?.lastHandledReconcileAt === requestedAt &&
          current.status.lastAppliedRevision === revision &&
          fluxCondition(current, "Ready")?.status === "True"
          ? current
          : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 50, what: "Kustomization apps applied the new revision" },
    );

    expect(ks.status?.lastAppliedRevision).to.equal(revision);
    expect(ks.status?.lastAttemptedRevision).to.equal(revision);
    expect(ks.status?.lastHandledReconcileAt).to.equal(requestedAt);
    expect(ks.status?.observedGeneration).to.equal(ks.metadata.generation);
    expect(fluxCondition(ks, "Ready")).to.include({
      status: "True",
      reason: "ReconciliationSucceeded",
      message: `Applied revision: ${revision}`,
      observedGeneration: ks.metadata.generation,
    });
    expect(fluxCondition(ks, "Reconciling")).to.equal(undefined);
    // No wait and no healthChecks: no Healthy condition at all.
    expect(fluxCondition(ks, "Healthy")).to.equal(undefined);
    expect(ks.status?.conditions?.map((c) => c.type)).to.deep.equal(["Ready"]);
    expect(ks.status?.inventory).to.deep.equal({
      entries: [{ id: "default_flux-lab-config__ConfigMap", v: "v1" }],
    });
    const latest = ks.status?.history?.[0];
    expect(latest).to.include({ lastReconciledStatus: "ReconciliationSucceeded" });
    expect(latest?.["metadata"]).to.deep.equal({ revision });
    expect(latest?.["digest"]).to.match(/^sha256:[0-9a-f]{64}$/);

    const applied = await kube.request<{ data?: Record<string, string> }>(
      "GET",
      "/api/v1/namespaces/default/configmaps/flux-lab-config",
    );
    expect(applied.status).to.equal(200);
    expect(applied.body.data).to.deep.equal({ greeting: "hello again", stage: "dev" });
  });

  it("walks a new revision through Ready=Unknown and back to Ready=True, triggered by the source alone", async () => {
    const { flux, fixture, kube } = lab();
    const before = await flux.kustomization("apps");
    const oldRevision = before.status?.lastAppliedRevision ?? "";
    const sha = await commitToBare(
      fixture.bareDir,
      { "flux/dev/configmap.yaml": configMap({ greeting: "third", stage: "dev" }) },
      "flux lab: third greeting",
    );
    const revision = revisionOf(sha);
    const watch = await flux.watch("Kustomization", "apps");
    try {
      await flux.requestReconcile("GitRepository", "apps");
      await waitFor(
        () =>
          watch.changes.some(
            ({ object }) =>
              object.status?.lastAppliedRevision === revision &&
              fluxCondition(object, "Ready")?.status === "True",
          ),
        { timeoutMs: 20_000, intervalMs: 50, what: "Kustomization apps applied the third commit" },
      );
    } finally {
      watch.stop();
    }

    const steps = statusSteps(watch);
    expect(steps[0]).to.deep.equal({
      ready: "True/ReconciliationSucceeded",
      reconciling: "-",
      healthy: "-",
      lastAttemptedRevision: oldRevision,
      lastAppliedRevision: oldRevision,
    });
    expect(steps.slice(1)).to.deep.equal(kustomizationApplySteps(oldRevision, revision));
    expect(reconcilingMessages(watch)).to.deep.equal(kustomizationReconcilingMessages(revision));
    const inProgress = watch.changes.find(
      ({ object }) => fluxCondition(object, "Ready")?.status === "Unknown",
    );
    expect(fluxCondition(inProgress?.object ?? before, "Ready")?.message).to.equal(
      "Reconciliation in progress",
    );
    // Not asked by annotation: lastHandledReconcileAt keeps the earlier request.
    const last = watch.changes.at(-1)?.object;
    expect(last?.status?.lastHandledReconcileAt).to.equal(before.status?.lastHandledReconcileAt);
    const applied = await kube.request<{ data?: Record<string, string> }>(
      "GET",
      "/api/v1/namespaces/default/configmaps/flux-lab-config",
    );
    expect(applied.body.data).to.deep.equal({ greeting: "third", stage: "dev" });
  });

  it("fails a health check: Ready=False HealthCheckFailed after the timeout, lastAppliedRevision stays", async function () {
    // kustomize-controller never waits less than 30s (Kustomization.GetTimeout): the "5s" asked for becomes 30s.
    this.timeout(90_000);
    const { flux, fixture, kube } = lab();
    const head = (await gitLog(fixture.bareDir))[0]?.sha ?? "";
    const first = await startPipeline("health", "./flux/health", { wait: true, timeout: "5s" });
    const oldRevision = first.status?.lastAppliedRevision ?? "";
    expect(oldRevision).to.equal(revisionOf(head));
    expect(fluxCondition(first, "Healthy")).to.include({ status: "True", reason: "Succeeded" });
    expect(fluxCondition(first, "Healthy")?.message).to.match(/^Health check passed in \d/);

    const sha = await commitToBare(
      fixture.bareDir,
      { "flux/health/deployment.yaml": deployment },
      "flux lab: a Deployment that never becomes ready",
    );
    const revision = revisionOf(sha);
    const timeoutText = "with a timeout of 30s";
    const watch = await flux.watch("Kustomization", "health");
    let failed: KustomizationObject;
    try {
      await flux.requestReconcile("GitRepository", "health");
      failed = (
        await waitFor(
          // The history is patched after the conditions: wait for both.
          () =>
            watch.changes.find(
              ({ object }) =>
                fluxCondition(object, "Ready")?.reason === "HealthCheckFailed" &&
                object.status?.history?.[0]?.["lastReconciledStatus"] === "HealthCheckFailed",
            ),
          { timeoutMs: 60_000, intervalMs: 50, what: "Kustomization health failed its health check" },
        )
      ).object;
    } finally {
      watch.stop();
    }

    expect(failed.status?.lastAttemptedRevision).to.equal(revision);
    expect(failed.status?.lastAppliedRevision).to.equal(oldRevision);
    const ready = fluxCondition(failed, "Ready");
    expect(ready).to.include({ status: "False", reason: "HealthCheckFailed" });
    const cause = healthCheckCause(ready?.message);
    expect(fluxCondition(failed, "Healthy")).to.include({
      status: "False",
      reason: "HealthCheckFailed",
      message: cause,
    });
    expect(fluxCondition(failed, "Reconciling")).to.include({
      status: "True",
      reason: "ProgressingWithRetry",
      message: `Running health checks for revision ${revision} ${timeoutText}`,
    });
    expect(fluxCondition(failed, "Stalled")).to.equal(undefined);
    // The generation did not change, so observedGeneration still equals it: not a sign of success on its own.
    expect(failed.status?.observedGeneration).to.equal(failed.metadata.generation);
    expect(failed.status?.history?.[0]).to.include({ lastReconciledStatus: "HealthCheckFailed" });
    expect(failed.status?.history?.[0]?.["metadata"]).to.deep.equal({ revision });
    // Applied nonetheless: the Deployment is in the inventory and in the API server.
    expect(failed.status?.inventory?.entries.map((entry) => entry.id)).to.include(
      "default_flux-lab-app_apps_Deployment",
    );
    const applied = await kube.request("GET", "/apis/apps/v1/namespaces/default/deployments/flux-lab-app");
    expect(applied.status).to.equal(200);

    expect(statusSteps(watch)).to.deep.equal([
      {
        ready: "True/ReconciliationSucceeded",
        reconciling: "-",
        healthy: "True/Succeeded",
        lastAttemptedRevision: oldRevision,
        lastAppliedRevision: oldRevision,
      },
      // While fetching and building, Healthy still says True: it is the previous revision's result.
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
    expect(reconcilingMessages(watch)).to.deep.equal([
      `Fetching manifests for revision ${revision} ${timeoutText}`,
      `Building manifests for revision ${revision} ${timeoutText}`,
      `Detecting drift for revision ${revision} ${timeoutText}`,
      `Running health checks for revision ${revision} ${timeoutText}`,
    ]);
    // The health check ran for the whole timeout before Ready turned False.
    const started = watch.changes.find(
      ({ object }) => fluxCondition(object, "Healthy")?.status === "Unknown",
    );
    const ended = watch.changes.find(({ object }) => fluxCondition(object, "Ready")?.status === "False");
    expect(fluxCondition(started?.object ?? failed, "Healthy")).to.include({
      reason: "Progressing",
      message: `Running health checks for revision ${revision} ${timeoutText}`,
    });
    expect((ended?.at ?? 0) - (started?.at ?? 0)).to.be.at.least(29_000);
  });

  it("reports a refused token on the GitRepository: Ready=False, FetchFailed, no artifact", async () => {
    const { flux, gitServer } = lab();
    await flux.createGitRepository({
      name: "wrong-token",
      url: gitServer.repoUrl("gitops.git"),
      username: gitServer.username,
      password: "not-the-token",
    });
    const repo = await waitFor(
      async () => {
        const current = await flux.gitRepository("wrong-token");
        return fluxCondition(current, "Ready")?.status === "False" ? current : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 100, what: "GitRepository wrong-token Ready=False" },
    );
    expect(repo.status?.artifact).to.equal(undefined);
    // Never succeeded: observedGeneration is -1, not absent.
    expect(repo.status?.observedGeneration).to.equal(-1);
    const ready = fluxCondition(repo, "Ready");
    const fetchFailed = fluxCondition(repo, "FetchFailed");
    const url = gitServer.repoUrl("gitops.git");
    expect(ready).to.include({ status: "False", reason: "GitOperationFailed" });
    // The tail is the git server's 401 body ("authentication required\n"), newline included.
    expect(ready?.message).to.equal(
      `failed to checkout and determine revision: unable to clone '${url}': authentication required: ` +
        "authentication required\n",
    );
    expect(fetchFailed).to.include({ status: "True", reason: "GitOperationFailed", message: ready?.message });
    expect(fluxCondition(repo, "Reconciling")).to.include({
      status: "True",
      reason: "ProgressingWithRetry",
      message: "building artifact",
    });
    expect(gitServer.requests.some((r) => !r.authorized && r.status === 401)).to.equal(true);
  });

  it("fails before and after lastAttemptedRevision: ArtifactFailed (missing path) and BuildFailed", async () => {
    const { flux } = lab();
    const revision = (await flux.gitRepository("apps")).status?.artifact?.revision ?? "";
    await flux.createKustomization({ name: "no-path", source: "apps", path: "./flux/absent", timeout: "1m" });
    await flux.createKustomization({ name: "broken", source: "apps", path: "./flux/broken", timeout: "1m" });
    const failed = async (name: string) =>
      waitFor(
        async () => {
          const ks = await flux.kustomization(name);
          return fluxCondition(ks, "Ready")?.status === "False" ? ks : undefined;
        },
        { timeoutMs: 20_000, intervalMs: 100, what: `Kustomization ${name} Ready=False` },
      );

    // The path is checked before lastAttemptedRevision is written: a first failure carries no revision field,
    // only the Reconciling message names it.
    const noPath = await failed("no-path");
    expect(fluxCondition(noPath, "Ready")).to.include({ reason: "ArtifactFailed" });
    expect(fluxCondition(noPath, "Ready")?.message).to.match(
      /^kustomization path not found: stat \/tmp\/kustomization-\d+\/flux\/absent: no such file or directory$/,
    );
    expect(fluxCondition(noPath, "Reconciling")).to.include({
      reason: "ProgressingWithRetry",
      message: `Fetching manifests for revision ${revision} with a timeout of 1m0s`,
    });
    expect(noPath.status).to.not.have.any.keys("lastAttemptedRevision", "lastAppliedRevision");
    expect(noPath.status?.observedGeneration).to.equal(-1);

    // A build error comes after it: lastAttemptedRevision names the commit, lastAppliedRevision stays absent.
    const broken = await failed("broken");
    expect(fluxCondition(broken, "Ready")).to.include({ reason: "BuildFailed" });
    expect(broken.status?.lastAttemptedRevision).to.equal(revision);
    expect(broken.status).to.not.have.any.keys("lastAppliedRevision");
    expect(fluxCondition(broken, "Reconciling")).to.include({
      reason: "ProgressingWithRetry",
      message: `Building manifests for revision ${revision} with a timeout of 1m0s`,
    });
    expect(broken.status?.observedGeneration).to.equal(-1);
  });

  it("records Kubernetes Events with the revision in annotations (what notification-controller would forward)", async () => {
    const { flux, kube } = lab();
    const revision = (await flux.kustomization("apps")).status?.lastAppliedRevision ?? "";
    interface KubeEvent {
      reason: string;
      type: string;
      message: string;
      involvedObject: { kind: string; name: string };
      metadata: { annotations?: Record<string, string> };
      reportingComponent?: string;
    }
    const events = async () =>
      (await kube.request<{ items: KubeEvent[] }>("GET", `/api/v1/namespaces/${FLUX_NAMESPACE}/events`)).body
        .items;
    const succeeded = await waitFor(
      async () =>
        (await events()).find(
          (event) =>
            event.involvedObject.kind === "Kustomization" &&
            event.involvedObject.name === "apps" &&
            event.reason === "ReconciliationSucceeded" &&
            event.metadata.annotations?.["kustomize.toolkit.fluxcd.io/revision"] === revision,
        ),
      { timeoutMs: 10_000, intervalMs: 100, what: "a ReconciliationSucceeded event of Kustomization apps" },
    );
    expect(succeeded.type).to.equal("Normal");
    expect(succeeded.reportingComponent).to.equal("kustomize-controller");
    expect(succeeded.message).to.match(/^Reconciliation finished in [\d.]+m?s, next run in 1h0m0s$/);
    expect(succeeded.metadata.annotations).to.deep.equal({
      "kustomize.toolkit.fluxcd.io/revision": revision,
      "kustomize.toolkit.fluxcd.io/commit_status": "update",
    });

    const all = await events();
    const applied = all.find(
      (event) =>
        event.reason === "Progressing" && event.message === "ConfigMap/default/flux-lab-config configured",
    );
    expect(applied?.metadata.annotations?.["kustomize.toolkit.fluxcd.io/revision"]).to.match(/^main@sha1:/);
    const newArtifact = all.find(
      (event) =>
        event.involvedObject.kind === "GitRepository" &&
        event.reason === "NewArtifact" &&
        event.message === "stored artifact for commit 'flux lab: third greeting'",
    );
    expect(newArtifact?.type).to.equal("Normal");
    expect(newArtifact?.metadata.annotations?.["source.toolkit.fluxcd.io/revision"]).to.equal(revision);
    expect(newArtifact?.metadata.annotations?.["source.toolkit.fluxcd.io/digest"]).to.match(/^sha256:/);
    const healthFailed = all.find(
      (event) => event.involvedObject.name === "health" && event.reason === "HealthCheckFailed",
    );
    expect(healthFailed?.type).to.equal("Warning");
    healthCheckCause(healthFailed?.message);
  });
});
