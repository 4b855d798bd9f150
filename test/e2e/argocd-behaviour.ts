import { expect } from "chai";
import { join } from "node:path";
import { GitHttpServer } from "../support/git-http-server.js";
import {
  commitToBare,
  createGitopsFixture,
  readFileAt,
  type GitopsFixture,
} from "../support/gitops-fixture.js";
import { AppStream } from "../support/app-stream.js";
import { waitFor } from "../support/wait.js";
import type { ArgoCdBackend, ArgoCdBackendFactory } from "./argocd-backend.js";

/** The parts of an Application these pins read. */
interface AppView {
  metadata: { name: string; resourceVersion: string };
  status?: {
    sync?: { status?: string; revision?: string };
    health?: { status?: string; message?: string };
    operationState?: {
      phase?: string;
      message?: string;
      finishedAt?: string;
      retryCount?: number;
      operation?: {
        sync?: { revision?: string };
        initiatedBy?: { automated?: boolean; username?: string };
        retry?: Record<string, unknown>;
      };
      syncResult?: { revision?: string; resources?: Array<{ kind: string; status: string }> };
    };
    history?: Array<{ id: number; revision: string }>;
  };
}

export interface BehaviourOptions {
  /** e.g. "Argo CD simulator" or "real Argo CD (lab)" */
  backend: string;
  start: ArgoCdBackendFactory;
  /** how long Argo CD may take to reach a state after a push */
  settleMs: number;
  stop?: () => Promise<void>;
}

const GIT_TOKEN = "behaviour-git-token";
const SHA = /^[0-9a-f]{40}$/;
const RFC3339_SECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

/** `tag: ...` of a values file replaced, quoted or not. */
async function bumpTag(fixture: GitopsFixture, file: string, tag: string): Promise<string> {
  const values = await readFileAt(fixture.bareDir, "main", file);
  const changed = values.replace(/^(\s*tag:\s*)("[^"\n]*"|[^\s#]+)/m, `$1"${tag}"`);
  expect(changed, `a tag in ${file}`).to.not.equal(values);
  return commitToBare(fixture.bareDir, { [file]: changed }, `${file}: ${tag}`);
}

/**
 * What the service relies on in Argo CD's answers, pinned against the real Argo CD of the lab
 * (`npm run test:real`) and against the simulator (default run), so that the simulator cannot drift from the
 * real tool unnoticed. docs/testing.md lists each behaviour and where the simulator was wrong.
 */
export function argoCdBehaviour(options: BehaviourOptions): void {
  describe(`Argo CD as the service sees it (${options.backend})`, function () {
    this.timeout(options.settleMs * 3 + 30_000);
    let fixture: GitopsFixture;
    let gitServer: GitHttpServer;
    let argo: ArgoCdBackend;

    const api = async (path: string, token = argo.token) => {
      const response = await fetch(`${argo.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    const app = async (name: string, query = "") =>
      (await api(`/api/v1/applications/${name}${query}`)).body as unknown as AppView;

    before(async function () {
      this.timeout(300_000);
      fixture = await createGitopsFixture();
      gitServer = await GitHttpServer.start({ projectRoot: join(fixture.root, "repos"), token: GIT_TOKEN });
      argo = await options.start({
        bareDir: fixture.bareDir,
        repoUrl: gitServer.repoUrl("gitops.git"),
        gitUsername: gitServer.username,
        gitToken: GIT_TOKEN,
      });
      // Both dev applications synced the seed commit on their own.
      for (const name of ["carts-dev", "orders-dev"]) {
        await waitFor(
          async () => {
            const view = await app(name);
            return (
              view.status?.operationState?.phase === "Succeeded" && view.status.health?.status === "Healthy"
            );
          },
          { timeoutMs: options.settleMs, intervalMs: 100, what: `${name} synced and healthy on the seed` },
        );
      }
    });
    after(async () => {
      await argo?.stop();
      await options.stop?.();
      await gitServer?.stop();
      await fixture?.remove();
    });

    it("moves sync.revision to the full SHA first, with the old health, then syncs it and records it in history", async () => {
      const stream = await AppStream.open<AppView>(argo, "carts-dev");
      try {
        const before = stream.frames.at(-1)!;
        const sha = await bumpTag(fixture, "charts/carts/values-dev.yaml", "0.13.3");
        await app("carts-dev", "?refresh=normal");
        const done = await stream.until(
          "carts-dev Synced and Healthy at the new commit",
          (view) =>
            view.status?.sync?.status === "Synced" &&
            view.status.sync.revision === sha &&
            view.status.operationState?.phase === "Succeeded" &&
            view.status.health?.status === "Healthy",
          options.settleMs,
        );
        // The finished operation is written before the app is compared again: one version says Succeeded at
        // the new commit while sync.status is still OutOfSync.
        const succeeded = stream.frames.find(
          (view) =>
            view.status?.operationState?.syncResult?.revision === sha &&
            view.status.operationState.phase === "Succeeded",
        );
        expect(succeeded?.status?.sync).to.include({ status: "OutOfSync", revision: sha });

        // The first version that knows the commit: OutOfSync at the full SHA, health still from before.
        const first = stream.frames.find((view) => view.status?.sync?.revision === sha)!;
        expect(first.status?.sync?.status).to.equal("OutOfSync");
        expect(first.status?.health?.status, "stale health from the previous revision").to.equal("Healthy");
        // Never Succeeded at the new commit before sync.revision named it.
        const firstSucceeded = stream.frames.findIndex(
          (view) =>
            view.status?.operationState?.syncResult?.revision === sha &&
            view.status.operationState.phase === "Succeeded",
        );
        expect(stream.frames.indexOf(first)).to.be.lessThan(firstSucceeded);
        // An operation that has just started carries no sync result yet, only the revision it was asked for.
        const started = stream.frames.find(
          (view) =>
            view.status?.operationState?.phase === "Running" &&
            view.status.operationState.operation?.sync?.revision === sha,
        );
        expect(started?.status?.operationState?.operation?.initiatedBy).to.deep.equal({ automated: true });

        expect(done.status?.sync).to.include({ status: "Synced", revision: sha });
        expect(done.status?.sync?.revision).to.match(SHA);
        expect(done.status?.operationState?.message).to.equal("successfully synced (all tasks run)");
        expect(done.status?.operationState?.finishedAt).to.match(RFC3339_SECONDS);
        const history = done.status?.history ?? [];
        expect(history.at(-1)?.revision).to.equal(sha);
        expect(history.at(-1)?.id).to.equal((before.status?.history?.at(-1)?.id ?? -1) + 1);
        const versions = stream.frames.map((view) => Number(view.metadata.resourceVersion));
        expect(versions, "resourceVersion only grows").to.deep.equal([...versions].sort((a, b) => a - b));
      } finally {
        stream.close();
      }
    });

    it("moves an untouched application to the new revision as Synced without a sync operation", async () => {
      const beforeView = await app("orders-dev");
      const lastOperation = beforeView.status?.operationState?.syncResult?.revision;
      const sha = await bumpTag(fixture, "charts/carts/values-dev.yaml", "0.13.4");
      const view = await waitFor(
        async () => {
          const current = await app("orders-dev", "?refresh=normal");
          return current.status?.sync?.revision === sha ? current : undefined;
        },
        { timeoutMs: options.settleMs, intervalMs: 200, what: "orders-dev compared with the new commit" },
      );
      expect(view.status?.sync?.status).to.equal("Synced");
      expect(view.status?.operationState?.syncResult?.revision, "no new operation").to.equal(lastOperation);
      expect(view.status?.health?.status).to.equal("Healthy");
    });

    it("retries a failed automated sync as its retry policy says, staying Running, then fails for good", async () => {
      const stream = await AppStream.open<AppView>(argo, "orders-dev");
      try {
        const historyBefore = stream.frames.at(-1)!.status?.history;
        const sha = await bumpTag(fixture, "charts/orders/values-dev.yaml", "0.13.9-syncfail");
        await app("orders-dev", "?refresh=normal");
        const failed = await stream.until(
          "orders-dev Failed at the syncfail commit",
          (view) =>
            view.status?.operationState?.phase === "Failed" &&
            view.status.operationState.syncResult?.revision === sha,
          options.settleMs + 10_000,
        );
        const ours = stream.frames.filter(
          (view) => view.status?.operationState?.operation?.sync?.revision === sha,
        );
        const retrying = ours.find((view) => view.status?.operationState?.retryCount === 1);
        const state = retrying?.status?.operationState;
        // The failed attempt: still Running, finishedAt set, the error and when the next attempt comes.
        expect(state?.phase).to.equal("Running");
        expect(state?.message).to.match(
          /^one or more objects failed to apply, reason: .*syncfail.*\. Retrying attempt #1 at \d{1,2}:\d{2}[AP]M\.$/,
        );
        expect(state?.finishedAt).to.match(RFC3339_SECONDS);
        expect(state?.syncResult?.resources?.[0]).to.include({ kind: "Deployment", status: "SyncFailed" });
        // The next attempt begins: finishedAt is cleared, the failed attempt's result is still there (the
        // controller's merge patch leaves out the result it cleared instead of nulling it).
        const again = ours.find(
          (view) => view.status?.operationState?.message === "Retrying operation. Attempt #1",
        );
        expect(again?.status?.operationState?.phase).to.equal("Running");
        expect(again?.status?.operationState).to.not.have.property("finishedAt");
        expect(again?.status?.operationState?.syncResult?.resources?.[0]).to.include({
          status: "SyncFailed",
        });
        expect(ours.indexOf(retrying!)).to.be.lessThan(ours.indexOf(again!));
        // The end: Failed, the retries counted in the message, nothing deployed.
        expect(failed.status?.operationState?.message).to.match(
          /^one or more objects failed to apply, reason: .*syncfail.* \(retried 1 times\)\.$/,
        );
        expect(failed.status?.operationState?.retryCount).to.equal(1);
        expect(failed.status?.sync).to.include({ status: "OutOfSync", revision: sha });
        expect(failed.status?.history).to.deep.equal(historyBefore);
        // Only Failed is final: every earlier version of this operation said Running.
        const phases = ours.slice(0, ours.indexOf(failed)).map((view) => view.status?.operationState?.phase);
        expect(new Set(phases)).to.deep.equal(new Set(["Running"]));
      } finally {
        stream.close();
      }
    });

    it("answers 403 for an application that does not exist and 401 for a token it does not know", async () => {
      const missing = await api("/api/v1/applications/no-such-app");
      expect(missing).to.deep.equal({
        status: 403,
        body: { error: "permission denied", code: 7, message: "permission denied" },
      });
      const stranger = await api("/api/v1/applications/carts-dev", "not-a-token");
      expect(stranger).to.deep.equal({
        status: 401,
        body: { error: "no session information", code: 16, message: "no session information" },
      });
    });

    // Last: the application keeps retrying for minutes afterwards.
    it("retries an automated sync 5 times when the application has no retry policy (Argo CD v3)", async () => {
      const stream = await AppStream.open<AppView>(argo, "carts-dev");
      try {
        const sha = await bumpTag(fixture, "charts/carts/values-dev.yaml", "0.16.0-syncfail");
        await app("carts-dev", "?refresh=normal");
        const retrying = await stream.until(
          "carts-dev retrying the syncfail commit",
          (view) =>
            view.status?.operationState?.operation?.sync?.revision === sha &&
            view.status.operationState.retryCount === 1,
          options.settleMs,
        );
        expect(retrying.status?.operationState?.operation?.retry).to.deep.equal({ limit: 5 });
        expect(retrying.status?.operationState?.phase).to.equal("Running");
        // backoff 5s for the first retry: the time named is within the next minute or two
        const [, hours, minutes, half] = /at (\d{1,2}):(\d{2})([AP]M)\.$/.exec(
          retrying.status?.operationState?.message ?? "",
        )!;
        const now = new Date();
        const named = ((Number(hours) % 12) + (half === "PM" ? 12 : 0)) * 60 + Number(minutes);
        const current = now.getUTCHours() * 60 + now.getUTCMinutes();
        expect((named - current + 1440) % 1440).to.be.at.most(1);
      } finally {
        stream.close();
      }
    });
  });
}
