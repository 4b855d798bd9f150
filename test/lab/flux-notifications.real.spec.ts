import { expect } from "chai";
import { createHmac, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { hostname, tmpdir } from "node:os";
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
  FLUX_NOTIFICATION_BINARY,
  FluxLab,
  fluxCondition,
} from "./flux-lab.js";
import { requireLabBinaries } from "./lab-paths.js";
import { KubeLab } from "./kube-lab.js";

// Pins what the real notification-controller (v1.9.3, built by `npm run lab:build`) POSTs to a `generic-hmac`
// Provider when the real source-controller and kustomize-controller (v1.9.6) send it their events: headers, the
// X-Signature, the body's field order, and the metadata after notification-controller rewrote it. The webhook
// receivers of the service and the Flux simulator rely on these shapes (reference: interfaces.md F1 and F2).

const configMap = (greeting: string) => `apiVersion: v1
kind: ConfigMap
metadata:
  name: flux-notifications-config
  namespace: default
data:
  greeting: "${greeting}"
`;

const revisionOf = (sha: string) => `main@sha1:${sha}`;

/** One POST as the webhook server saw it, body bytes untouched. */
interface RecordedPost {
  path: string;
  headers: IncomingHttpHeaders;
  /** Header names in the order they came on the wire, lower-cased. */
  headerNames: string[];
  raw: Buffer;
  /** What the webhook server answered. */
  status: number;
  /** Date.now() when the body was complete. */
  at: number;
}

/** The body notification-controller sends (fluxcd/pkg apis/event/v1beta1 Event). */
interface FluxNotification {
  involvedObject: {
    kind: string;
    namespace: string;
    name: string;
    uid: string;
    apiVersion: string;
    resourceVersion: string;
  };
  severity: string;
  timestamp: string;
  message: string;
  reason: string;
  metadata?: Record<string, string>;
  reportingController: string;
  reportingInstance: string;
}

/**
 * A webhook endpoint on a free loopback port that records every POST and answers 200, or, for a path given to
 * `failFirst`, 503 to the first POST on it.
 */
class WebhookRecorder {
  readonly posts: RecordedPost[] = [];
  private readonly failing = new Set<string>();

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<WebhookRecorder> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const recorder = new WebhookRecorder(
      server,
      `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    );
    server.on("request", (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const path = req.url ?? "/";
        const status = recorder.failing.delete(path) ? 503 : 200;
        recorder.posts.push({
          path,
          headers: req.headers,
          headerNames: req.rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase()),
          raw: Buffer.concat(chunks),
          status,
          at: Date.now(),
        });
        res.writeHead(status).end();
      });
    });
    return recorder;
  }

  failFirst(path: string): void {
    this.failing.add(path);
  }

  /** The POSTs on `path` with their parsed bodies. */
  on(path: string): Array<RecordedPost & { event: FluxNotification }> {
    return this.posts
      .filter((post) => post.path === path)
      .map((post) => ({ ...post, event: JSON.parse(post.raw.toString("utf8")) as FluxNotification }));
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const sign = (key: string, raw: Buffer) => `sha256=${createHmac("sha256", key).update(raw).digest("hex")}`;

describe("Flux notifications in the lab: the real notification-controller and a generic-hmac Provider", function () {
  this.timeout(30_000);

  const ALL = "/flux/events";
  const ERRORS = "/flux/errors";
  let dir: string | undefined;
  let kube: KubeLab | undefined;
  let flux: FluxLab | undefined;
  let fixture: GitopsFixture | undefined;
  let gitServer: GitHttpServer | undefined;
  let webhook: WebhookRecorder | undefined;
  const gitToken = randomBytes(16).toString("hex");
  const hmacToken = randomBytes(20).toString("hex");
  let seedSha = "";
  let pushedSha = "";

  const lab = () => {
    if (!flux || !kube || !fixture || !gitServer || !webhook) throw new Error("the lab did not start");
    return { flux, kube, fixture, gitServer, webhook };
  };

  /** Waits for a POST on `path` for that object with that reason (and revision, when given). */
  const notification = (
    path: string,
    match: { kind: string; name: string; reason: string; revision?: string },
    timeoutMs = 20_000,
  ) =>
    waitFor(
      () =>
        lab()
          .webhook.on(path)
          .find(
            ({ event }) =>
              event.involvedObject.kind === match.kind &&
              event.involvedObject.name === match.name &&
              event.reason === match.reason &&
              (match.revision === undefined || event.metadata?.["revision"] === match.revision),
          ),
      { timeoutMs, intervalMs: 50, what: `a ${match.reason} notification of ${match.kind}/${match.name}` },
    );

  before(async function () {
    this.timeout(120_000);
    await requireLabBinaries([...FLUX_LAB_BINARIES, FLUX_NOTIFICATION_BINARY]);
    dir = await mkdtemp(join(tmpdir(), "lab-flux-notifications-"));
    fixture = await createGitopsFixture({
      ...defaultGitopsFiles,
      "flux/dev/configmap.yaml": configMap("hello"),
    });
    seedSha = (await gitLog(fixture.bareDir))[0]?.sha ?? "";
    gitServer = await GitHttpServer.start({ projectRoot: join(fixture.root, "repos"), token: gitToken });
    webhook = await WebhookRecorder.start();
    kube = await KubeLab.start(dir);
    flux = await FluxLab.start(kube, dir, { notifications: true });

    // Everything at info and up goes to ALL; a second Provider on the same server gets errors only.
    const sources = [
      { kind: "GitRepository", name: "*", namespace: FLUX_NAMESPACE },
      { kind: "Kustomization", name: "*", namespace: FLUX_NAMESPACE },
    ];
    await flux.createProvider({
      name: "tracker",
      type: "generic-hmac",
      address: `${webhook.url}${ALL}`,
      token: hmacToken,
    });
    await flux.createAlert({
      name: "tracker",
      provider: "tracker",
      eventSeverity: "info",
      eventSources: sources,
    });
    await flux.createProvider({
      name: "errors",
      type: "generic-hmac",
      address: `${webhook.url}${ERRORS}`,
      token: hmacToken,
    });
    await flux.createAlert({
      name: "errors",
      provider: "errors",
      eventSeverity: "error",
      eventSources: sources,
    });

    await flux.createGitRepository({
      name: "apps",
      url: gitServer.repoUrl("gitops.git"),
      username: gitServer.username,
      password: gitToken,
    });
    await flux.createKustomization({ name: "apps", source: "apps", path: "./flux/dev", timeout: "1m" });
    await notification(ALL, {
      kind: "Kustomization",
      name: "apps",
      reason: "ReconciliationSucceeded",
      revision: revisionOf(seedSha),
    });
  });

  after(async () => {
    await flux?.stop();
    await kube?.stop();
    await webhook?.stop();
    await gitServer?.stop();
    await fixture?.remove();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("forwards a pushed commit: NewArtifact, Progressing with the change set, ReconciliationSucceeded", async () => {
    const { flux, fixture } = lab();
    const subject = "flux notifications: change the greeting";
    pushedSha = await commitToBare(
      fixture.bareDir,
      { "flux/dev/configmap.yaml": configMap("hello again") },
      subject,
    );
    const revision = revisionOf(pushedSha);
    await flux.requestReconcile("GitRepository", "apps");
    const newArtifact = await notification(ALL, {
      kind: "GitRepository",
      name: "apps",
      reason: "NewArtifact",
      revision,
    });
    const progressing = await notification(ALL, {
      kind: "Kustomization",
      name: "apps",
      reason: "Progressing",
      revision,
    });
    const succeeded = await notification(ALL, {
      kind: "Kustomization",
      name: "apps",
      reason: "ReconciliationSucceeded",
      revision,
    });
    const repo = await flux.gitRepository("apps");
    const ks = await flux.kustomization("apps");

    // metadata.revision without the `source.toolkit.fluxcd.io/` prefix, and the digest is gone (see the next test).
    expect(newArtifact.event).to.deep.equal({
      involvedObject: {
        kind: "GitRepository",
        namespace: FLUX_NAMESPACE,
        name: "apps",
        uid: repo.metadata["uid"],
        apiVersion: "source.toolkit.fluxcd.io/v1",
        resourceVersion: newArtifact.event.involvedObject.resourceVersion,
      },
      severity: "info",
      timestamp: newArtifact.event.timestamp,
      message: `stored artifact for commit '${subject}'`,
      reason: "NewArtifact",
      metadata: { revision },
      reportingController: "source-controller",
      // os.Hostname() of the controller: the pod name in a cluster.
      reportingInstance: hostname(),
    });
    const kustomizationEvent = {
      kind: "Kustomization",
      namespace: FLUX_NAMESPACE,
      name: "apps",
      uid: ks.metadata["uid"],
      apiVersion: "kustomize.toolkit.fluxcd.io/v1",
      resourceVersion: progressing.event.involvedObject.resourceVersion,
    };
    expect(progressing.event).to.deep.equal({
      involvedObject: kustomizationEvent,
      severity: "info",
      timestamp: progressing.event.timestamp,
      message: "ConfigMap/default/flux-notifications-config configured",
      reason: "Progressing",
      metadata: { revision },
      reportingController: "kustomize-controller",
      reportingInstance: hostname(),
    });
    // commit_status reaches a generic provider again since notification-controller v1.9.0 (v1.8 dropped the event).
    expect(succeeded.event).to.deep.equal({
      involvedObject: kustomizationEvent,
      severity: "info",
      timestamp: succeeded.event.timestamp,
      message: succeeded.event.message,
      reason: "ReconciliationSucceeded",
      metadata: { commit_status: "update", revision },
      reportingController: "kustomize-controller",
      reportingInstance: hostname(),
    });
    expect(succeeded.event.message).to.match(/^Reconciliation finished in [\d.]+m?s, next run in 1h0m0s$/);
    // involvedObject.resourceVersion is the version the controller read when the run began, the same in both
    // events of a run: not the object's current version, which the status patches after the events moved on.
    expect(kustomizationEvent.resourceVersion).to.match(/^\d+$/);
    expect(kustomizationEvent.resourceVersion).to.not.equal(ks.metadata.resourceVersion);
    expect(newArtifact.event.involvedObject.resourceVersion).to.match(/^\d+$/);
    // Only errors reach the error-only Alert.
    expect(lab().webhook.on(ERRORS)).to.deep.equal([]);
  });

  it("signs every POST: X-Signature is sha256=HMAC-SHA256(token, raw body); Go's headers; compact JSON", () => {
    const posts = lab().webhook.on(ALL);
    // Seed and pushed commit: 2 x (NewArtifact, Progressing, ReconciliationSucceeded).
    expect(posts.map(({ event }) => `${event.involvedObject.kind}/${event.reason}`).sort()).to.deep.equal([
      "GitRepository/NewArtifact",
      "GitRepository/NewArtifact",
      "Kustomization/Progressing",
      "Kustomization/Progressing",
      "Kustomization/ReconciliationSucceeded",
      "Kustomization/ReconciliationSucceeded",
    ]);
    for (const { raw, headers, headerNames, event } of posts) {
      expect(headers["x-signature"]).to.equal(sign(hmacToken, raw));
      // Go's client writes Host, User-Agent and Content-Length first, the set headers sorted, Accept-Encoding last.
      expect(headerNames).to.deep.equal([
        "host",
        "user-agent",
        "content-length",
        "content-type",
        "gotk-component",
        "x-signature",
        "accept-encoding",
      ]);
      expect(headers).to.include({
        "user-agent": "Go-http-client/1.1",
        "content-length": String(raw.length),
        "content-type": "application/json",
        "gotk-component": event.reportingController,
        "accept-encoding": "gzip",
      });
      // Go's json.Marshal: struct field order, no whitespace, no trailing newline, metadata keys sorted. (Go
      // would also escape <, > and & as \u003c...; none of these messages has one.)
      const text = raw.toString("utf8");
      expect(text).to.equal(JSON.stringify(event));
      expect(Object.keys(event)).to.deep.equal([
        "involvedObject",
        "severity",
        "timestamp",
        "message",
        "reason",
        "metadata",
        "reportingController",
        "reportingInstance",
      ]);
      expect(Object.keys(event.involvedObject)).to.deep.equal([
        "kind",
        "namespace",
        "name",
        "uid",
        "apiVersion",
        "resourceVersion",
      ]);
      const metadataKeys = Object.keys(event.metadata ?? {});
      expect(metadataKeys).to.deep.equal([...metadataKeys].sort());
      // RFC 3339, whole seconds, UTC.
      expect(event.timestamp).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    }
  });

  it("strips the API group from metadata keys and drops the digest: compare the controllers' Kubernetes Events", async () => {
    const { kube } = lab();
    // The controllers' event recorder writes the same metadata it POSTs to notification-controller as annotations
    // of the Kubernetes Event: that is the controller -> notification-controller wire form.
    interface KubeEvent {
      reason: string;
      involvedObject: { kind: string; name: string };
      metadata: { annotations?: Record<string, string> };
    }
    const events = (
      await kube.request<{ items: KubeEvent[] }>("GET", `/api/v1/namespaces/${FLUX_NAMESPACE}/events`)
    ).body.items;
    const annotationsOf = (kind: string, reason: string) =>
      events.find(
        (event) =>
          event.involvedObject.kind === kind &&
          event.involvedObject.name === "apps" &&
          event.reason === reason &&
          Object.values(event.metadata.annotations ?? {}).includes(revisionOf(pushedSha)),
      )?.metadata.annotations;
    const digest = annotationsOf("GitRepository", "NewArtifact")?.["source.toolkit.fluxcd.io/digest"];
    expect(digest).to.match(/^sha256:[0-9a-f]{64}$/);
    expect(annotationsOf("GitRepository", "NewArtifact")).to.deep.equal({
      "source.toolkit.fluxcd.io/digest": digest,
      "source.toolkit.fluxcd.io/revision": revisionOf(pushedSha),
    });
    expect(annotationsOf("Kustomization", "ReconciliationSucceeded")).to.deep.equal({
      "kustomize.toolkit.fluxcd.io/commit_status": "update",
      "kustomize.toolkit.fluxcd.io/revision": revisionOf(pushedSha),
    });
    // What the Provider got for the same events: no prefixes, no digest, no token key at all.
    const forwarded = lab()
      .webhook.on(ALL)
      .filter(({ event }) => event.metadata?.["revision"] === revisionOf(pushedSha))
      .map(({ event }) => event.metadata);
    expect(forwarded).to.have.length(3);
    for (const metadata of forwarded) {
      expect(Object.keys(metadata ?? {})).to.satisfy((keys: string[]) =>
        keys.every((key) => key === "revision" || key === "commit_status"),
      );
    }
  });

  it("reports a missing path with severity error and the revision the status does not show yet", async () => {
    const { flux, webhook } = lab();
    webhook.failFirst(ERRORS);
    await flux.createKustomization({ name: "no-path", source: "apps", path: "./flux/absent", timeout: "1m" });
    const failed = await notification(ALL, {
      kind: "Kustomization",
      name: "no-path",
      reason: "ArtifactFailed",
    });
    const ks = await flux.kustomization("no-path");
    expect(failed.event).to.deep.equal({
      involvedObject: {
        kind: "Kustomization",
        namespace: FLUX_NAMESPACE,
        name: "no-path",
        uid: ks.metadata["uid"],
        apiVersion: "kustomize.toolkit.fluxcd.io/v1",
        resourceVersion: failed.event.involvedObject.resourceVersion,
      },
      severity: "error",
      timestamp: failed.event.timestamp,
      message: failed.event.message,
      reason: "ArtifactFailed",
      // The status has no lastAttemptedRevision for this failure (flux.real.spec.ts), the event names it anyway.
      metadata: { revision: revisionOf(pushedSha) },
      reportingController: "kustomize-controller",
      reportingInstance: hostname(),
    });
    expect(failed.event.message).to.match(
      /^kustomization path not found: stat \/tmp\/kustomization-\d+\/flux\/absent: no such file or directory$/,
    );
    expect(ks.status).to.not.have.any.keys("lastAttemptedRevision");
    expect(fluxCondition(ks, "Ready")).to.include({ status: "False", reason: "ArtifactFailed" });
    expect(failed.headers["x-signature"]).to.equal(sign(hmacToken, failed.raw));
  });

  it("retries a 503 with the identical bytes and signature about 2 s later; the error-only Alert gets errors only", async () => {
    const { webhook } = lab();
    const [refused, retried] = await waitFor(
      () => {
        const posts = webhook.on(ERRORS);
        return posts.length >= 2 ? posts : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 50, what: "a retry of the refused ArtifactFailed notification" },
    );
    expect(refused?.status).to.equal(503);
    expect(retried?.status).to.equal(200);
    expect(retried?.raw.equals(refused?.raw ?? Buffer.alloc(0))).to.equal(true);
    expect(retried?.headers["x-signature"]).to.equal(refused?.headers["x-signature"]);
    expect(refused?.event).to.include({ reason: "ArtifactFailed", severity: "error" });
    // go-retryablehttp as notification-controller configures it: the first retry waits about 2 s (observed 2.0 s).
    expect((retried?.at ?? 0) - (refused?.at ?? 0)).to.be.within(1_500, 5_000);
    // The same notification reached the info Alert's Provider once: the 503 of the other one is not its concern.
    expect(webhook.on(ALL).filter(({ event }) => event.involvedObject.name === "no-path")).to.have.length(1);
  });
});
