import { expect } from "chai";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { GitHttpServer } from "../support/git-http-server.js";
import {
  commitToBare,
  createGitopsFixture,
  gitLog,
  readFileAt,
  type GitopsFixture,
} from "../support/gitops-fixture.js";
import { waitFor } from "../support/wait.js";
import { ArgoCdLab } from "./argocd-lab.js";
import { KubeLab } from "./kube-lab.js";
import { requireLabBinaries } from "./lab-paths.js";

// Pins what the real argocd-notifications controller (Argo CD v3.2.11) sends to a webhook: which of the
// catalog's triggers fire, when, how often, and with which revision. The configuration follows Argo CD's
// notifications catalog (triggers copied as published) with one webhook template per trigger.

const TRIGGERS = {
  "on-sync-running": "app.status.operationState != nil and app.status.operationState.phase in ['Running']",
  "on-sync-succeeded":
    "app.status.operationState != nil and app.status.operationState.phase in ['Succeeded']",
  "on-sync-failed":
    "app.status.operationState != nil and app.status.operationState.phase in ['Error', 'Failed']",
  "on-health-degraded": "app.status.health.status == 'Degraded'",
  "on-deployed":
    "app.status.operationState != nil and app.status.operationState.phase in ['Succeeded'] and app.status.health.status == 'Healthy' and (!time.Parse(app.status.health.lastTransitionTime).Add(1 * time.Minute).Before(time.Parse(app.status.operationState.finishedAt)) or time.Parse(app.status.health.lastTransitionTime).Before(time.Parse(app.status.operationState.startedAt)))",
} as const;
type Trigger = keyof typeof TRIGGERS;

const WEBHOOK_TOKEN = "notifications-webhook-token-7c1d";

function notificationsConfig(url: string): Record<string, string> {
  const data: Record<string, string> = {
    "service.webhook.keptn": stringify({
      url,
      headers: [{ name: "Authorization", value: "Bearer $keptn-token" }],
    }),
  };
  for (const [trigger, when] of Object.entries(TRIGGERS)) {
    data[`trigger.${trigger}`] = stringify([
      { when, send: [`keptn-${trigger}`], oncePer: "app.status.operationState?.syncResult?.revision" },
    ]);
    data[`template.keptn-${trigger}`] = stringify({
      webhook: {
        keptn: {
          method: "POST",
          path: `/argocd/${trigger}`,
          body: `{"trigger": "${trigger}", "app": {{ .app.metadata.name | toJson }}, "syncStatus": {{ dig "status" "sync" "status" "" .app | toJson }}, "syncRevision": {{ dig "status" "sync" "revision" "" .app | toJson }}, "healthStatus": {{ dig "status" "health" "status" "" .app | toJson }}, "operationPhase": {{ dig "status" "operationState" "phase" "" .app | toJson }}, "operationRevision": {{ dig "status" "operationState" "syncResult" "revision" "" .app | toJson }}, "requestedRevision": {{ dig "status" "operationState" "operation" "sync" "revision" "" .app | toJson }}, "operationMessage": {{ dig "status" "operationState" "message" "" .app | toJson }}}`,
        },
      },
    });
  }
  return data;
}

interface Notification {
  path: string;
  method: string;
  headers: IncomingHttpHeaders;
  raw: string;
  body: Record<string, string>;
  at: number;
}

describe("Argo CD notifications in the lab: what the real argocd-notifications sends to a webhook", function () {
  this.timeout(120_000);
  let dir: string;
  let kube: KubeLab | undefined;
  let argo: ArgoCdLab | undefined;
  let fixture: GitopsFixture | undefined;
  let gitServer: GitHttpServer | undefined;
  let receiver: Server | undefined;
  const received: Notification[] = [];

  before(async function () {
    this.timeout(300_000);
    await requireLabBinaries(["kube-apiserver", "argocd", "helm"]);
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const raw = Buffer.concat(chunks).toString("utf8");
        let body: Record<string, string> = {};
        try {
          body = JSON.parse(raw) as Record<string, string>;
        } catch {
          // pinned below: every body is JSON
        }
        received.push({
          path: req.url ?? "",
          method: req.method ?? "",
          headers: req.headers,
          raw,
          body,
          at: Date.now(),
        });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver!.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    dir = await mkdtemp(join(tmpdir(), "lab-argocd-notifications-"));
    fixture = await createGitopsFixture();
    gitServer = await GitHttpServer.start({ projectRoot: join(fixture.root, "repos"), token: "git-token" });
    kube = await KubeLab.start(dir);
    argo = await ArgoCdLab.start(
      kube,
      dir,
      {
        bareDir: fixture.bareDir,
        repoUrl: gitServer.repoUrl("gitops.git"),
        gitUsername: gitServer.username,
        gitToken: "git-token",
      },
      { notifications: { configMap: notificationsConfig(url), secret: { "keptn-token": WEBHOOK_TOKEN } } },
    );
  });

  after(async () => {
    await argo?.stop();
    await kube?.stop();
    await gitServer?.stop();
    await fixture?.remove();
    receiver?.closeAllConnections();
    await new Promise<void>((resolve) => (receiver ? receiver.close(() => resolve()) : resolve()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const app = async (name: string, query = "") => {
    const response = await fetch(`${argo!.url}/api/v1/applications/${name}${query}`, {
      headers: { authorization: `Bearer ${argo!.token}` },
    });
    return (await response.json()) as {
      status?: { operationState?: { phase?: string }; health?: { status?: string } };
    };
  };

  async function subscribe(name: string, triggers: Trigger[]) {
    const annotations = Object.fromEntries(
      triggers.map((t) => [`notifications.argoproj.io/subscribe.${t}.keptn`, ""]),
    );
    const answer = await kube!.request(
      "PATCH",
      `/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/${name}`,
      { metadata: { annotations } },
      "application/merge-patch+json",
    );
    expect(answer.status).to.equal(200);
  }

  async function bump(file: string, tag: string) {
    const values = await readFileAt(fixture!.bareDir, "main", file);
    return commitToBare(
      fixture!.bareDir,
      { [file]: values.replace(/^(\s*tag:\s*)("[^"\n]*"|[^\s#]+)/m, `$1"${tag}"`) },
      `${file}: ${tag}`,
    );
  }

  /** The notifications of one app and trigger so far, optionally only those about one operation revision. */
  const sent = (name: string, trigger: Trigger, revision?: string) =>
    received.filter(
      (n) =>
        n.body["app"] === name &&
        n.path === `/argocd/${trigger}` &&
        (revision === undefined || n.body["requestedRevision"] === revision),
    );
  const until = (what: string, probe: () => Notification | undefined, timeoutMs = 60_000) =>
    waitFor(probe, { timeoutMs, intervalMs: 50, what });

  it("fires on-sync-succeeded and on-deployed for the revision already deployed as soon as an app is subscribed", async () => {
    for (const name of ["carts-dev", "orders-dev"]) {
      await waitFor(
        async () => {
          const view = await app(name);
          return (
            view.status?.health?.status === "Healthy" && view.status.operationState?.phase === "Succeeded"
          );
        },
        { timeoutMs: 60_000, intervalMs: 200, what: `${name} synced on the seed` },
      );
    }
    const seed = (await gitLog(fixture!.bareDir))[0]!.sha;
    const all = Object.keys(TRIGGERS) as Trigger[];
    await subscribe("carts-dev", all);
    await subscribe("orders-dev", all);
    for (const name of ["carts-dev", "orders-dev"]) {
      for (const trigger of ["on-sync-succeeded", "on-deployed"] as const) {
        const notification = await until(`${trigger} of ${name}`, () => sent(name, trigger)[0]);
        expect(notification.body).to.include({
          syncStatus: "Synced",
          operationPhase: "Succeeded",
          operationRevision: seed,
          healthStatus: "Healthy",
        });
      }
    }
  });

  it("POSTs the rendered template with the configured headers, the secret resolved, and no Content-Type", async () => {
    const [notification] = sent("carts-dev", "on-sync-succeeded");
    expect(notification?.method).to.equal("POST");
    expect(notification?.headers).to.deep.equal({
      host: notification?.headers.host,
      "user-agent": "Go-http-client/1.1",
      "content-length": String(Buffer.byteLength(notification?.raw ?? "")),
      authorization: `Bearer ${WEBHOOK_TOKEN}`,
      "accept-encoding": "gzip",
    });
    expect(notification?.body["trigger"]).to.equal("on-sync-succeeded");
    expect(notification?.body["operationMessage"]).to.equal("successfully synced (all tasks run)");
  });

  it("a new commit: on-sync-succeeded and on-deployed once each, possibly before the app is Synced", async () => {
    const sha = await bump("charts/carts/values-dev.yaml", "0.13.3");
    await app("carts-dev", "?refresh=normal");
    const deployed = await until(
      "on-deployed of the new commit",
      () => sent("carts-dev", "on-deployed", sha)[0],
    );
    // Both triggers fire on the same evaluation and the controller sends them in either order: wait for both.
    await until("on-sync-succeeded of the new commit", () => sent("carts-dev", "on-sync-succeeded", sha)[0]);
    const succeeded = sent("carts-dev", "on-sync-succeeded", sha);
    expect(succeeded).to.have.length(1);
    expect(sent("carts-dev", "on-deployed", sha)).to.have.length(1);
    for (const notification of [deployed, succeeded[0]!]) {
      // Rendered from the version the controller evaluated. That is mostly the one that finished the operation,
      // still OutOfSync (the comparison comes after); on a busy machine it skips versions and it is already Synced.
      expect(notification.body).to.include({
        syncRevision: sha,
        operationPhase: "Succeeded",
        operationRevision: sha,
      });
      expect(["OutOfSync", "Synced"]).to.include(notification.body["syncStatus"]);
    }
    const running = sent("carts-dev", "on-sync-running", sha);
    for (const notification of running) {
      // Rendered from the app as the controller read it, which may already be later than the Running that fired.
      expect(notification.body["operationPhase"]).to.equal("Running");
      expect(["", sha]).to.include(notification.body["operationRevision"]);
      expect(notification.at).to.be.at.most(succeeded[0]!.at);
    }
  });

  it("keys the catalog's oncePer on the sync result, so on-sync-running fires at most once for all operations that start without one", async () => {
    // A starting operation has no syncResult, so oncePer evaluates to "" for every such operation of the app:
    // after the first, on-sync-running stays silent for them (the next commits showed none).
    const sha = await bump("charts/carts/values-dev.yaml", "0.13.5");
    await app("carts-dev", "?refresh=normal");
    await until("on-deployed of the next commit", () => sent("carts-dev", "on-deployed", sha)[0]);
    const keyless = sent("carts-dev", "on-sync-running").filter((n) => n.body["operationRevision"] === "");
    expect(keyless.length).to.be.at.most(1);
  });

  it("a commit whose rollout degrades: on-health-degraded with the commit, and any on-deployed before it says the stale Healthy", async () => {
    const sha = await bump("charts/carts/values-dev.yaml", "0.13.4-crashloop");
    await app("carts-dev", "?refresh=normal");
    const degraded = await until(
      "on-health-degraded of the crashloop commit",
      () => sent("carts-dev", "on-health-degraded", sha)[0],
    );
    expect(degraded.body).to.include({
      healthStatus: "Degraded",
      operationPhase: "Succeeded",
      operationRevision: sha,
    });
    for (const early of sent("carts-dev", "on-deployed", sha)) {
      // on-deployed can fire for a rollout that then degrades: health was still the previous revision's.
      expect(early.body).to.include({ healthStatus: "Healthy", operationRevision: sha });
      expect(early.at).to.be.at.most(degraded.at);
    }
  });

  it("a sync that fails under retry: on-sync-running again with the failed attempt's error, on-sync-failed once at the end", async () => {
    const sha = await bump("charts/orders/values-dev.yaml", "0.13.9-syncfail");
    await app("orders-dev", "?refresh=normal");
    const failed = await until(
      "on-sync-failed of the syncfail commit",
      () => sent("orders-dev", "on-sync-failed", sha)[0],
    );
    expect(failed.body).to.include({
      operationPhase: "Failed",
      operationRevision: sha,
      syncStatus: "OutOfSync",
    });
    expect(failed.body["operationMessage"]).to.match(
      /^one or more objects failed to apply, reason: .* \(retried 1 times\)\.$/,
    );
    expect(sent("orders-dev", "on-sync-failed", sha)).to.have.length(1);
    // The failed attempt under retry is Running with a sync result: a second on-sync-running, keyed by the SHA.
    const retrying = sent("orders-dev", "on-sync-running", sha).find(
      (n) => n.body["operationRevision"] === sha,
    );
    expect(retrying?.body["operationMessage"]).to.match(/\. Retrying attempt #1 at \d{1,2}:\d{2}[AP]M\.$/);
    expect(retrying!.at).to.be.at.most(failed.at);
  });
});
