import { expect } from "chai";
import { APPLICATIONS, simulatorBackend } from "./argocd-backend.js";
import { burstApplications, DeploymentWorld, worldFor, type KeptnEvent } from "./world.js";
import {
  burstGitopsFiles,
  burstServices,
  commitToBare,
  git,
  gitLog,
  readFileAt,
} from "../support/gitops-fixture.js";

const SERVICES = burstServices(20);
const valuesOf = (service: string) => `charts/${service}/values-dev.yaml`;

interface Triggered {
  service: string;
  tag: string;
  id: string;
}

/** The commits on main after `since`, each with the triggered ids of its `Keptn-Triggered-Id` trailers. */
async function commitsSince(world: DeploymentWorld, since: string): Promise<Map<string, string[]>> {
  const bare = world.fixture.bareDir;
  const shas = (await git(["--git-dir", bare, "rev-list", `${since}..main`])).split("\n").filter(Boolean);
  const commits = new Map<string, string[]>();
  for (const sha of shas) {
    const trailers = await git([
      "--git-dir",
      bare,
      "log",
      "-1",
      "--format=%(trailers:key=Keptn-Triggered-Id,valueonly)",
      sha,
    ]);
    commits.set(sha, trailers.split("\n").filter(Boolean));
  }
  return commits;
}

/** Triggers a deployment of each service with `tag`, all at once, and waits for every finished. */
async function burst(
  world: DeploymentWorld,
  services: string[],
  tag: string,
): Promise<Array<Triggered & { finished: KeptnEvent }>> {
  const triggered = services.map((service) => ({
    service,
    tag,
    id: world.trigger({ service, image: `docker.io/keptnexamples/${service}:${tag}` }).id,
  }));
  return Promise.all(
    triggered.map(async (t) => ({ ...t, finished: (await world.answersFor(t.id, 60_000)).finished })),
  );
}

/** Every passed deployment's commit holds its tag, and each commit's trailers name exactly its deployments. */
async function expectCommitsMatch(
  world: DeploymentWorld,
  results: Array<Triggered & { finished: KeptnEvent }>,
  commits: Map<string, string[]>,
): Promise<void> {
  const passed = results.filter((r) => r.finished.data.result === "pass");
  for (const { service, tag, finished } of passed) {
    const commit = finished.data.deployment!.gitCommit;
    expect(commits.has(commit), `${service}: ${commit} is one of the new commits`).to.equal(true);
    expect(await readFileAt(world.fixture.bareDir, commit, valuesOf(service))).to.include(`tag: "${tag}"`);
  }
  for (const [sha, ids] of commits) {
    const deployments = passed.filter((r) => r.finished.data.deployment!.gitCommit === sha).map((r) => r.id);
    expect([...ids].sort(), `the trailers of ${sha}`).to.deep.equal(deployments.sort());
  }
}

describe("bursts: deployments queued for one repository and branch share commits (Argo CD simulator)", function () {
  this.timeout(120_000);
  const world = worldFor(() =>
    DeploymentWorld.start({
      // Argo CD compares 24 applications with git; the service asks it to refresh after each push anyway.
      backend: simulatorBackend({ pollIntervalMs: 1_000, syncDurationMs: 50, healthDelayMs: 50 }, [
        ...APPLICATIONS,
        ...burstApplications(SERVICES.length),
      ]),
      extraFiles: burstGitopsFiles(SERVICES.length),
    }),
  );

  it("deploys 20 services triggered at once in far fewer than 20 commits, each finished with the commit holding its change", async () => {
    const before = (await gitLog(world().fixture.bareDir))[0]!.sha;
    const results = await burst(world(), SERVICES, "2.0.0");
    for (const { service, finished } of results) {
      expect(finished.data, service).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.message, service).to.match(/^Committed image\.tag: 1\.0\.0 -> 2\.0\.0 in /);
    }
    const commits = await commitsSince(world(), before);
    expect(commits.size, `${commits.size} commits for 20 deployments`).to.be.within(1, 6);
    await expectCommitsMatch(world(), results, commits);
    expect(
      [...commits.values()].some((ids) => ids.length > 1),
      "a commit holds several deployments",
    ).to.equal(true);
  });

  it("asks Argo CD for one refresh per application and commit, however many deployments of it the commit holds", async () => {
    const service = SERVICES[0]!;
    const calls = world().argo.requests.length;
    const triggered = Array.from({ length: 8 }, (_, i) =>
      world().trigger({ service, image: `docker.io/keptnexamples/${service}:5.0.${i + 1}` }),
    );
    const finished = await Promise.all(
      triggered.map(async ({ id }) => (await world().answersFor(id, 60_000)).finished),
    );
    for (const answer of finished) expect(answer.data).to.include({ status: "succeeded", result: "pass" });
    const commits = new Set(finished.map((answer) => answer.data.deployment!.gitCommit));
    expect(commits.size, `${commits.size} commits for 8 deployments`).to.be.below(8);
    const refreshes = world()
      .argo.requests.slice(calls)
      .filter((r) => r.method === "GET" && r.query["refresh"]);
    expect(refreshes, "one refreshing read per commit").to.have.length(commits.size);
  });

  it("fails only the deployment whose file cannot be edited; the others of its group are committed", async () => {
    const broken = SERVICES[4]!;
    await commitToBare(
      world().fixture.bareDir,
      { [valuesOf(broken)]: "# the image moved elsewhere\nreplicaCount: 1\n" },
      `Break ${broken}`,
    );
    const before = (await gitLog(world().fixture.bareDir))[0]!.sha;
    const results = await burst(world(), SERVICES.slice(0, 10), "3.0.0");
    for (const { service, finished } of results) {
      if (service === broken) {
        expect(finished.data).to.include({ status: "errored", result: "fail" });
        expect(finished.data.message).to.include(`${valuesOf(broken)} has no key image.tag`);
      } else {
        expect(finished.data, service).to.include({ status: "succeeded", result: "pass" });
      }
    }
    const commits = await commitsSince(world(), before);
    expect(commits.size).to.be.within(1, 5);
    await expectCommitsMatch(world(), results, commits);
    const brokenId = results.find((r) => r.service === broken)!.id;
    expect([...commits.values()].flat()).not.to.include(brokenId);
  });

  it("re-applies the whole group on the new head when another writer pushed first", async () => {
    let other = "";
    world().gitServer.beforeNextPush = async () => {
      other = await commitToBare(world().fixture.bareDir, { "NOTES.txt": "a person was here\n" }, "Note");
    };
    const before = (await gitLog(world().fixture.bareDir))[0]!.sha;
    const services = SERVICES.slice(10);
    const results = await burst(world(), services, "4.0.0");
    for (const { service, finished } of results) {
      expect(finished.data, service).to.include({ status: "succeeded", result: "pass" });
    }
    const commits = await commitsSince(world(), before);
    expect(commits.get(other), "the other writer's commit is on main").to.deep.equal([]);
    commits.delete(other);
    await expectCommitsMatch(world(), results, commits);
    expect(await readFileAt(world().fixture.bareDir, "main", "NOTES.txt")).to.equal("a person was here\n");
    expect(world().logLines.some((l) => l.includes("push rejected because the branch moved"))).to.equal(true);
  });
});
