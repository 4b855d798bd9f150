import { expect } from "chai";
import { commitToBare, gitLog, paymentsGitopsFiles, readFileAt } from "../support/gitops-fixture.js";
import { AppStream } from "../support/app-stream.js";
import { waitFor } from "../support/wait.js";
import { PAYMENTS_APPLICATIONS, type ClusterLevers } from "./argocd-backend.js";
import { worldFor, type DeploymentWorld, type KeptnEvent } from "./world.js";

export interface NeverFooledOptions {
  /** e.g. "Argo CD simulator" or "real Argo CD (lab)" */
  backend: string;
  /** A world whose Argo CD runs PAYMENTS_APPLICATIONS (test/e2e/argocd-backend.ts) and offers cluster levers. */
  startWorld: () => Promise<DeploymentWorld>;
  /** How long Argo CD may take to show a state the trap waits for; shorter than `testTimeoutMs`. */
  settleMs: number;
  /** Mocha timeout of one trap. */
  testTimeoutMs: number;
}

/** The parts of an Application the traps read. */
interface AppVersion {
  metadata: { name: string; resourceVersion: string; annotations?: Record<string, string> };
  operation?: unknown;
  status?: {
    sync?: { status?: string; revision?: string };
    health?: { status?: string; message?: string };
    operationState?: { phase?: string; message?: string; syncResult?: { revision?: string } };
  };
}

const short = (sha: string | undefined) => (sha ? sha.slice(0, 7) : "none");

/** One line per version, for the messages of failed assertions: what Argo CD really showed. */
function line(version: AppVersion): string {
  const status = version.status;
  const operation = status?.operationState;
  return [
    `rv ${version.metadata.resourceVersion}`,
    version.metadata.annotations?.["argocd.argoproj.io/refresh"] ? "refresh requested" : "",
    `${status?.sync?.status ?? "?"}@${short(status?.sync?.revision)}`,
    `${status?.health?.status ?? "?"}`,
    version.operation ? "operation set" : "",
    operation ? `last operation ${operation.phase ?? "?"}@${short(operation.syncResult?.revision)}` : "",
  ]
    .filter(Boolean)
    .join(" ");
}

/** Every version of one application that Argo CD's watch stream sends while a trap runs, in order. */
class Versions {
  private constructor(
    private readonly stream: AppStream<AppVersion>,
    private readonly settleMs: number,
  ) {}

  static async open(world: DeploymentWorld, app: string, settleMs: number): Promise<Versions> {
    return new Versions(await AppStream.open<AppVersion>(world.argo, app), settleMs);
  }

  get seen(): AppVersion[] {
    return this.stream.frames;
  }

  /** Waits for the first version from index `from` on that `ok` accepts; fails with every version seen. */
  async next(
    what: string,
    ok: (version: AppVersion) => boolean,
    { from = 0, timeoutMs = this.settleMs }: { from?: number; timeoutMs?: number } = {},
  ): Promise<{ version: AppVersion; index: number }> {
    const found = () => {
      const index = this.seen.findIndex((version, i) => i >= from && ok(version));
      return index < 0 ? undefined : { version: this.seen[index]!, index };
    };
    return waitFor(found, { timeoutMs, what }).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}; Argo CD sent:\n${this.describe()}`, { cause: error });
    });
  }

  describe(): string {
    return this.seen.map((version, i) => `  ${i}: ${line(version)}`).join("\n");
  }

  close(): void {
    this.stream.close();
  }
}

const syncedAt = (version: AppVersion, revision: string) =>
  version.status?.sync?.status === "Synced" && version.status.sync.revision === revision;
const healthOf = (version: AppVersion) => version.status?.health?.status;
const lastOperation = (version: AppVersion) => version.status?.operationState;

async function head(world: DeploymentWorld): Promise<string> {
  return (await gitLog(world.fixture.bareDir))[0]!.sha;
}

/** The commit the service pushes after `before`. */
function pushedAfter(world: DeploymentWorld, before: string): Promise<string> {
  return waitFor(async () => ((await head(world)) === before ? undefined : head(world)), {
    timeoutMs: 30_000,
    what: "the service's commit",
  });
}

/** Argo CD's API as the tests call it, as an operator would. */
async function argoApi(world: DeploymentWorld, method: string, path: string, body?: unknown) {
  const response = await fetch(`${world.argo.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${world.argo.token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as AppVersion & { message?: string } };
}

function levers(world: DeploymentWorld): ClusterLevers {
  if (!world.argo.levers) throw new Error("this Argo CD backend has no cluster levers");
  return world.argo.levers;
}

/** Runs `trap` while every version of `app` is recorded. */
async function watching(
  world: DeploymentWorld,
  app: string,
  settleMs: number,
  trap: (versions: Versions) => Promise<void>,
): Promise<void> {
  const versions = await Versions.open(world, app, settleMs);
  try {
    await trap(versions);
  } finally {
    versions.close();
  }
}

/** The finished event for `id`, when there is one yet. */
function finishedSoFar(world: DeploymentWorld, id: string): KeptnEvent | undefined {
  return world.answersSoFar(id).find((event) => event.type === "sh.keptn.event.deployment.finished");
}

/**
 * "Never fooled" (issue 4): the traps Argo CD sets for a tracker, each checked twice. First that the trap really
 * happened while the deployment waited (the versions of the application on Argo CD's watch stream), then the
 * service's answer on NATS. Runs against the simulator (never-fooled.spec.ts) and the real Argo CD of the lab
 * (test/lab/never-fooled.real.spec.ts); the applications are the `payments-<stage>` ones of PAYMENTS_APPLICATIONS.
 */
export function neverFooledScenarios({
  backend,
  startWorld,
  settleMs,
  testTimeoutMs,
}: NeverFooledOptions): void {
  describe(`never fooled by Argo CD (${backend})`, function () {
    this.timeout(testTimeoutMs);
    const world = worldFor(startWorld);
    const image = (tag: string) => `docker.io/keptnexamples/payments:${tag}`;

    before(async function () {
      this.timeout(180_000);
      const commit = await commitToBare(
        world().fixture.bareDir,
        { ...paymentsGitopsFiles },
        "payments: the service of the never-fooled traps",
      );
      // Argo CD compares at once (not at its next poll); the automated applications sync the chart on their own,
      // an operator syncs the others once.
      for (const { name, automated } of PAYMENTS_APPLICATIONS) {
        const compared = await argoApi(world(), "GET", `/api/v1/applications/${name}?refresh=normal`);
        expect(compared.status, `${name} ${JSON.stringify(compared.body)}`).to.equal(200);
        if (automated) continue;
        const sync = await argoApi(world(), "POST", `/api/v1/applications/${name}/sync`, {});
        expect(sync.status, `${name} ${JSON.stringify(sync.body)}`).to.equal(200);
      }
      for (const { name } of PAYMENTS_APPLICATIONS) {
        await waitFor(
          async () => {
            const { body } = await argoApi(world(), "GET", `/api/v1/applications/${name}`);
            return syncedAt(body, commit) && healthOf(body) === "Healthy" && !body.operation;
          },
          { timeoutMs: 90_000, intervalMs: 200, what: `${name} Synced and Healthy at ${short(commit)}` },
        );
      }
    });

    it("1. a stale Healthy from before the rollout: the rollout degrades, the answer is fail", async () => {
      await watching(world(), "payments-dev", settleMs, async (versions) => {
        const { id } = world().trigger({ service: "payments", image: image("1.1.0-crashloop") });
        const { finished } = await world().answersFor(id);
        const commit = finished.data.deployment!.gitCommit;

        // The trap: the first version at the new commit still carries the previous revision's Healthy.
        const stale = await versions.next(
          "the first version at the new commit",
          (v) => v.status?.sync?.revision === commit,
        );
        expect(healthOf(stale.version), `stale health\n${versions.describe()}`).to.equal("Healthy");
        expect(syncedAt(stale.version, commit)).to.equal(false);
        await versions.next(
          "Synced and Degraded at the new commit",
          (v) => syncedAt(v, commit) && healthOf(v) === "Degraded",
          { from: stale.index + 1 },
        );

        expect(finished.data).to.include({ status: "succeeded", result: "fail" });
        expect(finished.data.message)
          .to.include(`synced application payments-dev to commit ${short(commit)}`)
          .and.include("Degraded");
        expect(commit).to.equal(await head(world()));
      });
    });

    it("2. a sync of an older revision: Synced and Healthy at the older commit after the push, the answer is the new commit's own fail", async () => {
      const app = "payments-production";
      const file = "charts/payments/values-production.yaml";
      await watching(world(), app, settleMs, async (versions) => {
        const values = await readFileAt(world().fixture.bareDir, "main", file);
        const older = await commitToBare(
          world().fixture.bareDir,
          { [file]: values.replace(/^(\s*tag:\s*).*$/m, '$1"1.2.0"') },
          "payments 1.2.0 to production, by hand",
        );
        let pushing = -1;
        // While the deployment is underway, an operator syncs the older commit; the new commit lands after that.
        world().gitServer.beforeNextPush = async () => {
          const sync = await argoApi(world(), "POST", `/api/v1/applications/${app}/sync`, {
            revision: older,
          });
          expect(sync.status, JSON.stringify(sync.body)).to.equal(200);
          await versions.next(
            "the older commit synced, Synced and Healthy",
            (v) =>
              syncedAt(v, older) &&
              healthOf(v) === "Healthy" &&
              lastOperation(v)?.phase === "Succeeded" &&
              lastOperation(v)?.syncResult?.revision === older,
          );
          pushing = versions.seen.length;
        };
        const { id } = world().trigger({
          service: "payments",
          stage: "production",
          image: image("1.3.0-crashloop"),
        });
        const { finished } = await world()
          .answersFor(id)
          .finally(() => (world().gitServer.beforeNextPush = undefined));
        const commit = finished.data.deployment!.gitCommit;

        // The trap, after the push: the version argocd-server writes for the service's own refresh request says
        // Synced and Healthy at the older commit; the refresh answer still says Healthy, with the older sync last.
        expect(pushing, "the operator's sync ran before the push").to.be.at.least(0);
        const stale = await versions.next(
          "Synced and Healthy at the older commit while the refresh is requested",
          (v) =>
            !!v.metadata.annotations?.["argocd.argoproj.io/refresh"] &&
            syncedAt(v, older) &&
            healthOf(v) === "Healthy",
          { from: pushing },
        );
        await versions.next(
          "OutOfSync at the new commit, Healthy, the older sync last",
          (v) =>
            v.status?.sync?.revision === commit &&
            v.status.sync.status === "OutOfSync" &&
            healthOf(v) === "Healthy" &&
            lastOperation(v)?.phase === "Succeeded" &&
            lastOperation(v)?.syncResult?.revision === older,
          { from: stale.index + 1 },
        );

        expect(finished.data).to.include({ status: "succeeded", result: "fail" });
        expect(finished.data.message)
          .to.include(`synced application ${app} to commit ${short(commit)}`)
          .and.include("Degraded");
        const syncs = world().argo.requests.filter(
          (r) => r.method === "POST" && r.path === `/api/v1/applications/${app}/sync`,
        );
        expect(
          syncs.map((r) => (r.body as { revision?: string }).revision),
          "the operator's sync, then the service's own",
        ).to.include.members([older, commit]);
      });
    });

    it("3. Synced at the new revision although its image was never applied (ignoreDifferences on the image): the answer is Argo CD's sync failure", async () => {
      const app = "payments-canary";
      await watching(world(), app, settleMs, async (versions) => {
        const { id } = world().trigger({
          service: "payments",
          stage: "canary",
          image: image("1.4.0-syncfail"),
        });
        const { finished } = await world().answersFor(id);
        const commit = finished.data.deployment!.gitCommit;

        // The trap: the comparison leaves the image out, so Argo CD says Synced at the commit, Healthy, while the
        // live Deployment still runs the previous image (the API server refuses the new one).
        await versions.next(
          "Synced and Healthy at the new commit, never synced successfully",
          (v) =>
            syncedAt(v, commit) &&
            healthOf(v) === "Healthy" &&
            !(lastOperation(v)?.phase === "Succeeded" && lastOperation(v)?.syncResult?.revision === commit),
        );

        // The right answer: the application has no automated sync, so the service syncs it, and Argo CD fails.
        const synced = world().argo.requests.some(
          (r) =>
            r.method === "POST" &&
            r.path === `/api/v1/applications/${app}/sync` &&
            (r.body as { revision?: string }).revision === commit,
        );
        expect(
          finished.data.result,
          `the service ${synced ? "synced" : "never synced"} ${app}, and answered: ${finished.data.message ?? ""}`,
        ).to.equal("fail");
        const failed = await versions.next(
          "the sync of the new commit Failed, still Synced",
          (v) =>
            syncedAt(v, commit) &&
            lastOperation(v)?.phase === "Failed" &&
            lastOperation(v)?.syncResult?.revision === commit,
        );
        expect(finished.data.status).to.equal("succeeded");
        expect(finished.data.message)
          .to.include(`Argo CD could not sync application ${app} to commit ${short(commit)}: `)
          .and.include(lastOperation(failed.version)?.message ?? "the operation message");
      });
    });

    it("3b. Synced and Healthy at the new revision while its operation failed (a PostSync hook refused): the answer is fail", async () => {
      const app = "payments-qa";
      await watching(world(), app, settleMs, async (versions) => {
        const { id } = world().trigger({ service: "payments", stage: "qa", image: image("1.5.0-hookfail") });
        const { finished } = await world().answersFor(id);
        const commit = finished.data.deployment!.gitCommit;

        const failed = await versions.next(
          "Synced and Healthy at the new commit, its operation Failed",
          (v) =>
            syncedAt(v, commit) &&
            healthOf(v) === "Healthy" &&
            lastOperation(v)?.phase === "Failed" &&
            lastOperation(v)?.syncResult?.revision === commit,
        );

        expect(finished.data).to.include({ status: "succeeded", result: "fail" });
        expect(finished.data.message)
          .to.include(`Argo CD could not sync application ${app} to commit ${short(commit)}: `)
          .and.include(lastOperation(failed.version)!.message!);
      });
    });

    it("4. a health that flaps at the old revision while the deployment waits: no answer from it, pass once the commit is Synced and Healthy", async () => {
      const app = "payments-staging";
      await watching(world(), app, settleMs, async (versions) => {
        const before = await head(world());
        // A deny sync window holds the new commit back, so the application stays at the old revision.
        await levers(world()).denySyncs(app, true);
        try {
          const { id } = world().trigger({ service: "payments", stage: "staging", image: image("1.6.0") });
          const commit = await pushedAfter(world(), before);
          const waiting = await versions.next(
            "OutOfSync at the new commit, no sync started",
            (v) =>
              v.status?.sync?.revision === commit && v.status.sync.status === "OutOfSync" && !v.operation,
          );

          await levers(world()).setLiveHealth(app, "Degraded");
          const degraded = await versions.next(
            "Degraded at the old revision",
            (v) => healthOf(v) === "Degraded" && v.status?.sync?.status === "OutOfSync" && !v.operation,
            { from: waiting.index + 1 },
          );
          expect(
            lastOperation(degraded.version)?.syncResult?.revision,
            "the live revision is an older one",
          ).to.not.equal(commit);
          await levers(world()).setLiveHealth(app, undefined);
          const recovered = await versions.next(
            "Healthy again at the old revision",
            (v) => healthOf(v) === "Healthy" && v.status?.sync?.status === "OutOfSync",
            { from: degraded.index + 1 },
          );
          expect(finishedSoFar(world(), id), "no answer while the commit is not synced").to.equal(undefined);

          await levers(world()).denySyncs(app, false);
          // Argo CD would look again at its next poll; an operator's refresh makes that now.
          await argoApi(world(), "GET", `/api/v1/applications/${app}?refresh=normal`);
          const { finished } = await world().answersFor(id);
          await versions.next(
            "Synced and Healthy at the new commit",
            (v) => syncedAt(v, commit) && healthOf(v) === "Healthy",
            { from: recovered.index + 1 },
          );

          expect(finished.data).to.include({ status: "succeeded", result: "pass" });
          expect(finished.data.deployment?.gitCommit).to.equal(commit);
          expect(finished.data.message).to.include(
            `synced application ${app} to commit ${short(commit)}; it is Synced and Healthy`,
          );
        } finally {
          await levers(world()).denySyncs(app, false);
        }
      });
    });

    it("4b. a flap after the new commit is synced: the first Degraded at the new revision ends it with fail", async () => {
      const app = "payments-staging";
      await watching(world(), app, settleMs, async (versions) => {
        const before = await head(world());
        try {
          const { id } = world().trigger({
            service: "payments",
            stage: "staging",
            image: image("1.7.0-hang"),
          });
          const commit = await pushedAfter(world(), before);
          const progressing = await versions.next(
            "Synced at the new commit, Progressing",
            (v) => syncedAt(v, commit) && healthOf(v) === "Progressing" && !v.operation,
          );
          await levers(world()).setLiveHealth(app, "Degraded");
          const { finished } = await world().answersFor(id);
          await levers(world()).setLiveHealth(app, undefined);
          const degraded = await versions.next(
            "Degraded at the new commit",
            (v) => syncedAt(v, commit) && healthOf(v) === "Degraded",
            { from: progressing.index + 1 },
          );
          await versions.next(
            "Progressing again",
            (v) => syncedAt(v, commit) && healthOf(v) === "Progressing",
            { from: degraded.index + 1 },
          );

          expect(finished.data).to.include({ status: "succeeded", result: "fail" });
          expect(finished.data.deployment?.gitCommit).to.equal(commit);
          expect(finished.data.message)
            .to.include(`synced application ${app} to commit ${short(commit)} but it is Degraded`)
            .and.include("lab: health set by the annotation lab.keptn.sh/health");
        } finally {
          await levers(world()).setLiveHealth(app, undefined);
        }
      });
    });
  });
}
