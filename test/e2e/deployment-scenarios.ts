import { expect } from "chai";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { commitToBare, defaultGitopsFiles, gitLog, readFileAt } from "../support/gitops-fixture.js";
import {
  ARGO_TOKEN,
  GIT_TOKEN,
  WRONG_GIT_TOKEN,
  worldFor,
  type DeploymentWorld,
  type KeptnEvent,
} from "./world.js";

async function head(world: DeploymentWorld): Promise<string> {
  return (await gitLog(world.fixture.bareDir))[0]!.sha;
}

export interface ScenarioOptions {
  /** What `title` the describe block gets, e.g. "Argo CD simulator" or "real Argo CD (lab)". */
  backend: string;
  startWorld: () => Promise<DeploymentWorld>;
  /** The `slowTimeout` the world was started with, as the service prints it. */
  slowTimeout: string;
  /** Mocha timeout of one scenario. */
  testTimeoutMs: number;
}

/**
 * The end-to-end scenarios of the deployment flow. They run against the Argo CD simulator in the default test
 * run (test/e2e/deployment-flow.spec.ts) and against the real Argo CD of the lab in `npm run test:real`.
 */
export function deploymentScenarios({
  backend,
  startWorld,
  slowTimeout,
  testTimeoutMs,
}: ScenarioOptions): void {
  describe(`deployment through GitOps (NATS -> git -> ${backend})`, function () {
    this.timeout(testTimeoutMs);
    const world = worldFor(startWorld);

    it("commits the new tag, waits for Argo CD to sync that commit, and answers started then finished", async () => {
      const before = await head(world());
      const { id, shkeptncontext } = world().trigger({ image: "docker.io/keptnexamples/carts:0.13.3" });
      const { started, finished } = await world().answersFor(id);

      const log = await gitLog(world().fixture.bareDir);
      const commit = log[0]!;
      expect(log[1]!.sha).to.equal(before);
      expect(commit.body)
        .to.include(`Keptn-Context: ${shkeptncontext}`)
        .and.include(`Keptn-Triggered-Id: ${id}`);
      expect(commit.subject).to.equal("Deploy carts docker.io/keptnexamples/carts:0.13.3 to sockshop/dev");
      const values = await readFileAt(world().fixture.bareDir, "main", "charts/carts/values-dev.yaml");
      expect(values).to.include('tag: "0.13.3"   # bumped by Keptn');

      for (const event of [started, finished]) {
        expect(event).to.include({
          shkeptncontext,
          triggeredid: id,
          source: "gitops-service",
          specversion: "1.0",
          shkeptnspecversion: "0.2.4",
        });
        expect(event.data).to.deep.include({
          project: "sockshop",
          stage: "dev",
          service: "carts",
          labels: { buildId: "17" },
        });
      }
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.message)
        .to.include(`as ${commit.sha.slice(0, 7)}`)
        .and.include("Synced and Healthy");
      expect(finished.data.deployment).to.deep.equal({
        deploymentstrategy: "direct",
        deploymentNames: ["carts-dev"],
        deploymentURIsLocal: ["http://carts.sockshop-dev:8080"],
        deploymentURIsPublic: [],
        gitCommit: commit.sha,
      });
      const app = world().argo.requests.filter((r) => r.path === "/api/v1/applications/carts-dev");
      expect(
        app.some((r) => r.query["refresh"] === "normal"),
        "asked Argo CD to refresh",
      ).to.equal(true);
    });

    it("starts the sync itself when the application has no automated sync policy", async () => {
      const { id } = world().trigger({ stage: "production", image: "docker.io/keptnexamples/carts:0.14.0" });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      const sync = world().argo.requests.find(
        (r) => r.method === "POST" && r.path === "/api/v1/applications/carts-production/sync",
      );
      expect(sync?.body).to.deep.include({ revision: finished.data.deployment!.gitCommit });
    });

    it("edits a plain manifest's container image for a manifest target", async () => {
      const { id } = world().trigger({
        stage: "production",
        service: "orders",
        image: "docker.io/keptnexamples/orders:0.14.1",
      });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      const file = "manifests/production/orders/deployment.yaml";
      const original = defaultGitopsFiles[file]!;
      expect(await readFileAt(world().fixture.bareDir, "main", file)).to.equal(
        original.replace(
          '"docker.io/keptnexamples/orders:0.13.1"',
          '"docker.io/keptnexamples/orders:0.14.1"',
        ),
      );
    });

    it("reports a Degraded application as a failed deployment with Argo CD's message", async () => {
      const { id } = world().trigger({ image: "docker.io/keptnexamples/carts:0.13.4-crashloop" });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "fail" });
      expect(finished.data.message).to.include("Degraded");
      expect(finished.data.deployment!.gitCommit).to.equal(await head(world()));
    });

    it("reports a failed sync operation as a failed deployment", async () => {
      const { id } = world().trigger({
        service: "orders",
        image: "docker.io/keptnexamples/orders:0.13.9-syncfail",
      });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "fail" });
      expect(finished.data.message).to.match(
        /Argo CD could not sync application orders-dev to commit [0-9a-f]{7}: /,
      );
    });

    it("times out with errored/fail and says what it last saw", async () => {
      const { id } = world().trigger({
        project: "sockshop-slow",
        image: "docker.io/keptnexamples/carts:0.15.0-hang",
      });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "errored", result: "fail" });
      expect(finished.data.message)
        .to.include(`did not finish within ${slowTimeout}`)
        .and.include("last seen: sync Synced at")
        .and.include("health Progressing");
      expect(finished.data.deployment!.gitCommit).to.equal(await head(world()));
    });

    it("makes no commit when the value is already deployed, and deploys the current head", async () => {
      const first = world().trigger({ service: "orders", image: "docker.io/keptnexamples/orders:0.20.0" });
      await world().answersFor(first.id);
      const before = await gitLog(world().fixture.bareDir);
      const again = world().trigger({ service: "orders", image: "docker.io/keptnexamples/orders:0.20.0" });
      const { finished } = await world().answersFor(again.id);
      expect(await gitLog(world().fixture.bareDir)).to.have.length(before.length);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.deployment!.gitCommit).to.equal(before[0]!.sha);
      expect(finished.data.message).to.include("already holds docker.io/keptnexamples/orders:0.20.0");
    });

    it("lands two deployments into the same repository at the same time", async () => {
      const before = (await gitLog(world().fixture.bareDir)).length;
      const carts = world().trigger({ service: "carts", image: "docker.io/keptnexamples/carts:1.0.0" });
      const orders = world().trigger({ service: "orders", image: "docker.io/keptnexamples/orders:1.0.0" });
      const [a, b] = await Promise.all([world().answersFor(carts.id), world().answersFor(orders.id)]);
      expect(a.finished.data).to.include({ result: "pass" });
      expect(b.finished.data).to.include({ result: "pass" });
      const log = await gitLog(world().fixture.bareDir);
      // One commit each, or one for both when the second queued while the first was committed (git.maxChangesPerCommit).
      expect(log.length - before).to.be.within(1, 2);
      expect(log[0]!.sha).to.be.oneOf([
        a.finished.data.deployment!.gitCommit,
        b.finished.data.deployment!.gitCommit,
      ]);
      expect(await readFileAt(world().fixture.bareDir, "main", "charts/carts/values-dev.yaml")).to.include(
        'tag: "1.0.0"',
      );
      expect(await readFileAt(world().fixture.bareDir, "main", "charts/orders/values-dev.yaml")).to.include(
        "1.0.0",
      );
    });

    it("wins a push race: another writer moves the branch between fetch and push, the change is re-applied", async () => {
      let other = "";
      world().gitServer.beforeNextPush = async () => {
        other = await commitToBare(
          world().fixture.bareDir,
          { "charts/orders/NOTES.txt": "edited by a person\n" },
          "Note",
        );
      };
      const { id } = world().trigger({ image: "docker.io/keptnexamples/carts:3.0.0" });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      const [ours, theirs] = await gitLog(world().fixture.bareDir);
      expect(theirs!.sha).to.equal(other);
      expect(ours!.sha).to.equal(finished.data.deployment!.gitCommit);
      expect(ours!.body).to.include(`Keptn-Triggered-Id: ${id}`);
      expect(await readFileAt(world().fixture.bareDir, "main", "charts/orders/NOTES.txt")).to.equal(
        "edited by a person\n",
      );
      expect(await readFileAt(world().fixture.bareDir, "main", "charts/carts/values-dev.yaml")).to.include(
        'tag: "3.0.0"',
      );
      expect(world().logLines.some((l) => l.includes("push rejected because the branch moved"))).to.equal(
        true,
      );
    });

    it("accepts the go-utils wire shape: contenttype, null arrays, an empty strategy, extensions", async () => {
      const shkeptncontext = "a3e5f16d-8888-4720-82c7-6995062905c1";
      const goUtilsId = "3f9640b6-1d2a-4f11-95f5-23259f1d82d6";
      world().trigger({
        body: {
          contenttype: "application/json",
          data: {
            project: "sockshop",
            stage: "dev",
            service: "carts",
            labels: null,
            configurationChange: { values: { image: "docker.io/keptnexamples/carts:3.1.0" } },
            deployment: { deploymentURIsLocal: null, deploymentstrategy: "" },
            result: "pass",
            status: "succeeded",
          },
          extensions: null,
          id: goUtilsId,
          shkeptncontext,
          shkeptnspecversion: "0.2.3",
          source: "shipyard-controller",
          specversion: "1.0",
          time: "2026-11-25T10:00:00.000Z",
          type: "sh.keptn.event.deployment.triggered",
        },
      });
      const { finished } = await world().answersFor(goUtilsId);
      expect(finished).to.include({ shkeptnspecversion: "0.2.3", shkeptncontext });
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.labels).to.deep.equal({});
      expect(finished.data.deployment).to.include({ deploymentstrategy: "direct" });
    });

    it("rides out transient Argo CD errors", async () => {
      world().argo.injectFailures(3, 503);
      const { id } = world().trigger({ image: "docker.io/keptnexamples/carts:3.2.0" });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(
        world().logLines.filter((l) => l.includes("Argo CD call failed; retrying")).length,
      ).to.be.greaterThan(0);
    });

    it("answers a redelivered triggered event once", async () => {
      const body = {
        specversion: "1.0",
        id: "5d0e2a3c-0f8e-4a9b-9d51-6a1f8f0c7b11",
        type: "sh.keptn.event.deployment.triggered",
        source: "shipyard-controller",
        shkeptncontext: "0b8e5f3c-8a3e-4f1e-9e0e-1f6e8a6b2c44",
        data: {
          project: "sockshop",
          stage: "dev",
          service: "orders",
          configurationChange: { values: { image: "docker.io/keptnexamples/orders:3.3.0" } },
        },
      };
      world().trigger({ body });
      world().trigger({ body });
      await world().answersFor(body.id);
      const next = world().trigger({ service: "orders", image: "docker.io/keptnexamples/orders:3.3.1" });
      await world().answersFor(next.id);
      expect(
        world()
          .answersSoFar(body.id)
          .map((e) => e.type),
      ).to.deep.equal(["sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"]);
    });

    it("reports health and readiness over HTTP", async () => {
      const health = await fetch(`${world().httpUrl}/healthz`);
      expect(health.status).to.equal(200);
      const ready = await fetch(`${world().httpUrl}/readyz`);
      expect(ready.status).to.equal(200);
      expect(await ready.json()).to.deep.equal({ status: "ready", checks: { config: true, nats: true } });
    });

    describe("bad input always gets an answer", () => {
      const errored = async (id: string, text: string | RegExp): Promise<KeptnEvent> => {
        const { finished } = await world().answersFor(id);
        expect(finished.data).to.include({ status: "errored", result: "fail" });
        if (typeof text === "string") expect(finished.data.message).to.include(text);
        else expect(finished.data.message).to.match(text);
        return finished;
      };

      it("unknown project", async () => {
        const { id } = world().trigger({ project: "nobody-knows" });
        await errored(id, "no target is configured for project nobody-knows, stage dev, service carts");
      });

      it("no image in configurationChange.values", async () => {
        const { id } = world().trigger({ image: null });
        await errored(id, "set configurationChange.values.image");
      });

      it("a file that does not exist", async () => {
        const { id } = world().trigger({ stage: "qa" });
        await errored(id, "charts/carts/values-qa.yaml does not exist on branch main");
      });

      it("a file that is not YAML", async () => {
        await commitToBare(
          world().fixture.bareDir,
          { "charts/broken/values-dev.yaml": "image:\n  tag: [unclosed\n" },
          "Add a broken file",
        );
        const { id } = world().trigger({ service: "broken" });
        await errored(id, /charts\/broken\/values-dev.yaml is not valid YAML \(line \d+\)/);
      });

      it("a service name that would escape the repository", async () => {
        const { id } = world().trigger({ service: "../../../etc" });
        await errored(id, 'the service name "../../../etc" cannot be used');
      });

      it("an event whose data does not fit the schema", async () => {
        const { id } = world().trigger({
          envelope: {
            data: { project: "sockshop", stage: "dev", service: "carts", configurationChange: "nope" },
          },
        });
        await errored(
          id,
          "the sh.keptn.event.deployment.triggered event is malformed: data.configurationChange",
        );
      });

      it("drops what cannot be answered and keeps serving", async () => {
        world().trigger({ body: "this is not json" });
        world().trigger({ body: { type: "sh.keptn.event.deployment.triggered", data: {} } });
        const { id } = world().trigger({ service: "orders", image: "docker.io/keptnexamples/orders:2.0.0" });
        const { finished } = await world().answersFor(id);
        expect(finished.data).to.include({ status: "succeeded", result: "pass" });
        expect(
          world().logLines.some((l) => l.includes("dropped a message that is not a CloudEvent")),
        ).to.equal(true);
        expect(world().logLines.some((l) => l.includes("dropped an event that cannot be answered"))).to.equal(
          true,
        );
      });

      it("a repository that does not exist on the git server, answered without retrying", async () => {
        const before = world().gitServer.requests.filter((r) => r.path.startsWith("/missing.git")).length;
        const { id } = world().trigger({ project: "gone" });
        await errored(
          id,
          /git clone of http:\/\/127\.0\.0\.1:\d+\/missing\.git failed: the repository or branch main does not exist/,
        );
        const asked =
          world().gitServer.requests.filter((r) => r.path.startsWith("/missing.git")).length - before;
        expect(asked, "git requests for the missing repository").to.equal(1);
      });

      it("a git token the server rejects, without showing any token anywhere", async () => {
        const { id } = world().trigger({ project: "locked" });
        await errored(
          id,
          'the credentials were rejected; check the token of repository "gitops-wrong-token"',
        );
        const everything = [
          ...world().logLines,
          ...world().answers.events.map((e) => JSON.stringify(e)),
        ].join("\n");
        for (const secret of [
          GIT_TOKEN,
          WRONG_GIT_TOKEN,
          ARGO_TOKEN,
          Buffer.from(`x-access-token:${GIT_TOKEN}`).toString("base64"),
        ]) {
          expect(everything).not.to.include(secret);
        }
        const entries = await import("node:fs/promises").then((fs) => fs.readdir(world().cacheDir));
        // The clones; `.state` holds the task records, `.ssh` and `.signing` keys.
        for (const clone of entries.filter((name) => !name.startsWith("."))) {
          const gitConfig = await readFile(join(world().cacheDir, clone, ".git", "config"), "utf8");
          expect(gitConfig).not.to.include(GIT_TOKEN);
          expect(gitConfig).not.to.include(WRONG_GIT_TOKEN);
        }
      });
    });
  });
}
