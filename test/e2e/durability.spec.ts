import { expect } from "chai";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { burstServices, git, gitLog, burstGitopsFiles } from "../support/gitops-fixture.js";
import { ServiceProcess } from "../support/service-process.js";
import { waitFor } from "../support/wait.js";
import { burstApplications, DeploymentWorld, worldFor, type KeptnEvent } from "./world.js";
import { APPLICATIONS, simulatorBackend } from "./argocd-backend.js";

// Answers are counted as Keptn's shipyard-controller reads them: from the `keptn` stream.
// Never lose a deployment: the service runs as a child process on a JetStream-enabled nats-server with Keptn's
// `keptn` stream, and is killed with SIGKILL at each phase of a deployment. After a restart, every triggered event
// gets exactly one started and one finished, and the repository exactly one commit for it.

const STARTED = "sh.keptn.event.deployment.started";
const FINISHED = "sh.keptn.event.deployment.finished";

function expectOneAnswer(answers: KeptnEvent[]): KeptnEvent {
  expect(answers.map((e) => e.type)).to.deep.equal([STARTED, FINISHED]);
  return answers[1]!;
}

/** How many commits on main carry `Keptn-Triggered-Id: <id>`. */
async function commitsFor(bareDir: string, id: string): Promise<number> {
  const out = await git([
    "--git-dir",
    bareDir,
    "log",
    "--format=%H",
    "--fixed-strings",
    `--grep=Keptn-Triggered-Id: ${id}`,
    "main",
  ]);
  return out.split("\n").filter(Boolean).length;
}

describe("durability: SIGKILL at each phase, JetStream intake and task store (service as a child process)", function () {
  this.timeout(120_000);
  let dir: string;
  let service: ServiceProcess;
  const world = worldFor(() =>
    DeploymentWorld.start({
      jetstream: true,
      inProcess: false,
      // An interrupted task is carried on at the next turn of the heartbeat (every third of the lease).
      lease: "3s",
      extraFiles: burstGitopsFiles(50),
      // 55 applications: the simulator compares with git on the service's refresh, not every 100 ms (as Argo CD,
      // which polls every 3 minutes), so that the test measures the service rather than the simulator's polling.
      backend: simulatorBackend({ pollIntervalMs: 60_000 }, [...APPLICATIONS, ...burstApplications(50)]),
      answerTimeoutMs: 60_000,
    }),
  );
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "durability-"));
    service = await ServiceProcess.start(dir, world().serviceSetup());
  });
  after(async () => {
    await service?.kill();
    await rm(dir, { recursive: true, force: true });
  });

  /** Every answer for `id` once its finished arrived, after another deployment also finished (a sentinel). */
  async function answersOf(id: string): Promise<KeptnEvent[]> {
    await world().answersFor(id, 60_000);
    const sentinel = world().trigger({
      project: "sockshop",
      stage: "dev",
      service: "orders",
      image: `docker.io/keptnexamples/orders:9.${Date.now() % 100000}.0`,
    });
    await world().answersFor(sentinel.id, 60_000);
    return world().storedAnswers(id);
  }

  it("takes a triggered event through the durable consumer and records it in the key-value bucket", async () => {
    const { id } = world().trigger({ stage: "dev", image: "docker.io/keptnexamples/carts:2.0.0" });
    const finished = expectOneAnswer(await answersOf(id));
    expect(finished.data).to.include({ status: "succeeded", result: "pass" });
    expect(service.lines.join("\n")).to.include(
      "taking triggered events from JetStream through a durable consumer",
    );
    expect(service.lines.join("\n")).to.include("keptn-gitops-gitops-service");
    expect(await commitsFor(world().fixture.bareDir, id)).to.equal(1);
  });

  it("killed after started, before its first git request: carried on after the restart", async () => {
    const { reached: atGit, release } = world().gitServer.hold("request");
    const { id } = world().trigger({ stage: "dev", image: "docker.io/keptnexamples/carts:2.1.0" });
    await atGit;
    await service.kill();
    release();
    await service.restart();
    const finished = expectOneAnswer(await answersOf(id));
    expect(finished.data).to.include({ status: "succeeded", result: "pass" });
    expect(await commitsFor(world().fixture.bareDir, id)).to.equal(1);
  });

  it("killed after the commit, while its push is held: the change is committed and pushed once after the restart", async () => {
    const { reached: atPush, release } = world().gitServer.hold("push");
    const head = (await gitLog(world().fixture.bareDir))[0]!.sha;
    const { id } = world().trigger({ stage: "dev", image: "docker.io/keptnexamples/carts:2.2.0" });
    await atPush;
    await service.kill();
    release();
    expect((await gitLog(world().fixture.bareDir))[0]!.sha, "the held push did not land").to.equal(head);
    await service.restart();
    const finished = expectOneAnswer(await answersOf(id));
    expect(finished.data).to.include({ status: "succeeded", result: "pass" });
    expect(await commitsFor(world().fixture.bareDir, id)).to.equal(1);
  });

  it("killed after the push, while Argo CD may not sync: finds its own commit by its trailer and waits for it", async () => {
    const sim = world().simulator!;
    sim.denySyncs("carts-dev", true);
    const pushes = world().gitServer.requests.length;
    const { id } = world().trigger({ stage: "dev", image: "docker.io/keptnexamples/carts:2.3.0" });
    await waitFor(
      () =>
        world()
          .gitServer.requests.slice(pushes)
          .some(
            (r) => r.path.endsWith("/git-receive-pack") && r.status === 200 && r.finishedAt !== undefined,
          ),
      { timeoutMs: 20_000, what: "the push" },
    );
    const commit = (await gitLog(world().fixture.bareDir))[0]!.sha;
    await service.kill();
    const from = service.lines.length;
    await service.restart();
    await service.logged("found the deployment's commit from before the restart", from);
    sim.denySyncs("carts-dev", false);
    const finished = expectOneAnswer(await answersOf(id));
    expect(finished.data).to.include({ status: "succeeded", result: "pass" });
    expect(finished.data.deployment!.gitCommit).to.equal(commit);
    expect(finished.data.message).to.include(`Committed ${commit.slice(0, 7)} before the service restarted`);
    expect(await commitsFor(world().fixture.bareDir, id)).to.equal(1);
  });

  it("killed after the sync, while the rollout is not healthy: answers once it is", async () => {
    const sim = world().simulator!;
    await sim.setLiveHealth("carts-dev", "Progressing");
    const { id } = world().trigger({ stage: "dev", image: "docker.io/keptnexamples/carts:2.4.0" });
    await service.logged(`"triggeredid":"${id}"`);
    await waitFor(async () => (await commitsFor(world().fixture.bareDir, id)) === 1, {
      timeoutMs: 20_000,
      what: "the commit",
    });
    await service.kill();
    await service.restart();
    await sim.setLiveHealth("carts-dev", undefined);
    const finished = expectOneAnswer(await answersOf(id));
    expect(finished.data).to.include({ status: "succeeded", result: "pass" });
    expect(await commitsFor(world().fixture.bareDir, id)).to.equal(1);
  });

  it("a deadline that passed while the service was down: answered errored at the restart, nothing committed", async () => {
    const { reached: atGit, release } = world().gitServer.hold("request");
    const triggeredAt = Date.now();
    const { id } = world().trigger({
      project: "sockshop-slow",
      stage: "dev",
      image: "docker.io/keptnexamples/carts:2.6.0",
    });
    await atGit;
    await service.kill();
    release();
    // The point is time passing while no replica runs: the 2 s timeout of sockshop-slow ends meanwhile.
    await waitFor(() => Date.now() - triggeredAt > 2_500, { timeoutMs: 5_000, what: "the deadline to pass" });
    await service.restart();
    const finished = expectOneAnswer(await answersOf(id));
    expect(finished.data).to.include({ status: "errored", result: "fail" });
    expect(finished.data.message).to.equal(
      "the deployment did not finish within 2s: its deadline passed while no replica of the service was running; trigger it again",
    );
    expect(await commitsFor(world().fixture.bareDir, id)).to.equal(0);
  });

  it("nats-server killed and restarted mid-flight: not ready meanwhile, then the answer is sent once", async () => {
    const sim = world().simulator!;
    sim.denySyncs("carts-dev", true);
    const { id } = world().trigger({ stage: "dev", image: "docker.io/keptnexamples/carts:2.7.0" });
    await waitFor(async () => (await commitsFor(world().fixture.bareDir, id)) === 1, {
      timeoutMs: 20_000,
      what: "the commit",
    });
    const started = service.lines.filter((l) => l.includes('"msg":"keptn-gitops-service started"')).at(-1)!;
    const readiness = async () =>
      (await fetch(`${(JSON.parse(started) as { http: string }).http}/readyz`)).status;
    await world().nats.kill("SIGKILL");
    await waitFor(async () => (await readiness()) === 503, {
      timeoutMs: 15_000,
      what: "/readyz to say not ready",
    });
    // Synced and healthy while NATS is down: the answer must wait for the connection.
    sim.denySyncs("carts-dev", false);
    await world().nats.restart();
    await waitFor(async () => (await readiness()) === 200, {
      timeoutMs: 20_000,
      what: "/readyz to say ready",
    });
    const answers = await waitFor(
      async () => {
        const stored = await world().storedAnswers(id);
        return stored.some((e) => e.type === FINISHED) ? stored : undefined;
      },
      { timeoutMs: 90_000, what: "the finished event in the keptn stream" },
    );
    const finished = expectOneAnswer(answers);
    expect(finished.data).to.include({ status: "succeeded", result: "pass" });
    expect(await commitsFor(world().fixture.bareDir, id)).to.equal(1);
  });

  it("SIGTERM while a deployment waits: exits within the grace period without answering, and the restart answers", async () => {
    const sim = world().simulator!;
    sim.denySyncs("carts-dev", true);
    const { id } = world().trigger({ stage: "dev", image: "docker.io/keptnexamples/carts:2.8.0" });
    await waitFor(async () => (await commitsFor(world().fixture.bareDir, id)) === 1, {
      timeoutMs: 20_000,
      what: "the commit",
    });
    const from = service.lines.length;
    expect(await service.terminate(), "exit code").to.equal(0);
    const stopping = service.lines.slice(from).join("\n");
    expect(stopping).to.include("task handed over on stop").and.include("keptn-gitops-service stopped");
    expect((await world().storedAnswers(id)).map((e) => e.type)).to.deep.equal([STARTED]);
    sim.denySyncs("carts-dev", false);
    await service.restart();
    const finished = expectOneAnswer(await answersOf(id));
    expect(finished.data).to.include({ status: "succeeded", result: "pass" });
    expect(await commitsFor(world().fixture.bareDir, id)).to.equal(1);
  });

  it("the same triggered event twice (same id): one started, one finished, one commit", async () => {
    const image = "docker.io/keptnexamples/carts:2.5.0";
    const { id, shkeptncontext } = world().trigger({ image });
    world().trigger({ image, envelope: { id, shkeptncontext } });
    const finished = expectOneAnswer(await answersOf(id));
    expect(finished.data).to.include({ status: "succeeded", result: "pass" });
    expect(await commitsFor(world().fixture.bareDir, id)).to.equal(1);
  });

  it("50 triggered events published while the service is down are all answered once after it starts", async () => {
    await service.kill();
    const ids = burstServices(50).map(
      (name) =>
        world().trigger({ stage: "dev", service: name, image: `docker.io/keptnexamples/${name}:3.0.0` }).id,
    );
    await service.restart();
    for (const id of ids) await world().answersFor(id, 60_000);
    const byId = await world().storedAnswersById();
    const stored = ids.map((id) => byId.get(id) ?? []);
    for (const answers of stored) expectOneAnswer(answers);
    const finished = stored.map((answers) => answers[1]!);
    expect(finished.filter((e) => e.data.result !== "pass").map((e) => e.data.message)).to.deep.equal([]);
  });
});

describe("two replicas share 100 deployments, one killed on the way (JetStream, child processes)", function () {
  this.timeout(180_000);
  let dir: string;
  const replicas: ServiceProcess[] = [];
  const world = worldFor(() =>
    DeploymentWorld.start({
      jetstream: true,
      inProcess: false,
      lease: "1s",
      ackWait: "2s",
      extraFiles: burstGitopsFiles(100),
      backend: simulatorBackend({ pollIntervalMs: 60_000 }, [...APPLICATIONS, ...burstApplications(100)]),
      answerTimeoutMs: 120_000,
    }),
  );
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "replicas-"));
    for (const name of ["replica-a", "replica-b"]) {
      // Each replica has its own clone; the tasks are shared through the key-value bucket.
      replicas.push(
        await ServiceProcess.start(dir, world().serviceSetup(), {
          KEPTN_GITOPS_REPLICA_ID: name,
          KEPTN_GITOPS_GIT_CACHE_DIR: join(dir, name),
        }),
      );
    }
  });
  after(async () => {
    for (const replica of replicas) await replica.kill();
    await rm(dir, { recursive: true, force: true });
  });

  it("answers every deployment exactly once, the survivor carrying on the killed replica's tasks", async () => {
    const [a, b] = replicas as [ServiceProcess, ServiceProcess];
    const ids = burstServices(100).map(
      (name) =>
        world().trigger({ stage: "dev", service: name, image: `docker.io/keptnexamples/${name}:4.0.0` }).id,
    );
    const finishedCount = () =>
      world().answers.events.filter(
        (e) => (e as KeptnEvent).type === FINISHED && ids.includes((e as KeptnEvent).triggeredid!),
      ).length;
    const count = (replica: ServiceProcess, msg: string) =>
      replica.lines.filter((l) => l.includes(`"msg":"${msg}"`)).length;
    const took = (replica: ServiceProcess) => count(replica, "task started");
    // Killed while it works on some: a third or more answered, and replica a has tasks started and not finished.
    await waitFor(() => finishedCount() >= 33 && took(a) > count(a, "task finished"), {
      timeoutMs: 120_000,
      what: "a third of the deployments to finish while replica a has some in flight",
    });
    expect(took(a), "replica a took tasks").to.be.greaterThan(0);
    expect(took(b), "replica b took tasks").to.be.greaterThan(0);
    await a.kill();
    for (const id of ids) await world().answersFor(id, 120_000);
    const byId = await world().storedAnswersById();
    const stored = ids.map((id) => byId.get(id) ?? []);
    for (const answers of stored) expectOneAnswer(answers);
    expect(
      stored
        .filter((answers) => answers[1]!.data.result !== "pass")
        .map((answers) => answers[1]!.data.message),
    ).to.deep.equal([]);
    for (const id of ids) expect(await commitsFor(world().fixture.bareDir, id), id).to.equal(1);
    expect(
      b.lines.some(
        (l) => l.includes('"msg":"carrying on a recorded task"') && l.includes('"previousOwner":"replica-a"'),
      ),
    ).to.equal(true);
  });
});

describe("without JetStream: core NATS intake and the file store", function () {
  this.timeout(60_000);
  const world = worldFor(() => DeploymentWorld.start());

  it("says so at start, records tasks in files under the cache, and deploys", async () => {
    const logs = () => world().logLines.join("\n");
    expect(logs()).to.include(
      "no JetStream stream of the control plane: taking triggered events over core NATS; events sent while the service is down are lost",
    );
    expect(logs()).to.include(`file task store at ${join(world().cacheDir, ".state")}, for one replica only`);
    const { id } = world().trigger({ stage: "dev", image: "docker.io/keptnexamples/carts:5.0.0" });
    const { finished } = await world().answersFor(id);
    expect(finished.data).to.include({ status: "succeeded", result: "pass" });
  });
});
