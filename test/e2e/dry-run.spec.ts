import { expect } from "chai";
import { DeploymentWorld, worldFor } from "./world.js";
import { defaultGitopsFiles, git, gitLog } from "../support/gitops-fixture.js";

/** Every ref of the bare repository with its commit: a dry run must leave all of them as they were. */
async function refs(world: DeploymentWorld): Promise<string> {
  return git(["--git-dir", world.fixture.bareDir, "show-ref"]);
}

function dryRunScenarios(project: string, world: () => DeploymentWorld): void {
  it("edits and diffs, answers pass with the diff and the current head, and commits, pushes and syncs nothing", async () => {
    const before = await refs(world());
    const head = (await gitLog(world().fixture.bareDir))[0]!.sha;
    const calls = world().argo.requests.length;
    const { id } = world().trigger({
      project,
      stage: "production",
      image: "docker.io/keptnexamples/carts:0.13.9",
    });
    const { finished } = await world().answersFor(id);

    expect(finished.data).to.include({ status: "succeeded", result: "pass" });
    expect(finished.data.deployment!.gitCommit).to.equal(head);
    const file = "charts/carts/values-production.yaml";
    const message = finished.data.message ?? "";
    const opening =
      `Dry run: would commit image.tag: 0.13.1 -> 0.13.9 in ${file} on branch main of repository gitops on top of ${head.slice(0, 7)}. ` +
      `Nothing was committed or pushed, and carts-production was not synced.\n\n` +
      `diff --git a/${file} b/${file}\n` +
      `index ${(await git(["--git-dir", world().fixture.bareDir, "rev-parse", "--short", `main:${file}`])).trim()}..`;
    expect(message.slice(0, opening.length)).to.equal(opening);
    expect(message)
      .to.include(`--- a/${file}\n+++ b/${file}\n`)
      .and.include('\n-  tag: "0.13.1"   # bumped by Keptn\n+  tag: "0.13.9"   # bumped by Keptn\n');
    expect(await refs(world()), "the bare repository is unchanged").to.equal(before);
    const argo = world().argo.requests.slice(calls);
    expect(argo.filter((r) => r.method === "POST" || r.query["refresh"])).to.deep.equal([]);
    expect(defaultGitopsFiles[file]).to.include('tag: "0.13.1"');
  });

  it("says so when the file already holds the image", async () => {
    const head = (await gitLog(world().fixture.bareDir))[0]!.sha;
    const { id } = world().trigger({
      project,
      stage: "production",
      image: "docker.io/keptnexamples/carts:0.13.1",
    });
    const { finished } = await world().answersFor(id);
    expect(finished.data).to.include({ status: "succeeded", result: "pass" });
    expect(finished.data.message).to.equal(
      `Dry run: charts/carts/values-production.yaml on branch main of repository gitops already holds docker.io/keptnexamples/carts:0.13.1 at ${head.slice(0, 7)}; a deployment would commit nothing. Nothing was committed or pushed.`,
    );
  });
}

describe("dry run: targets[].dryRun (Argo CD simulator)", function () {
  this.timeout(60_000);
  const world = worldFor(() => DeploymentWorld.start());
  dryRunScenarios("sockshop-dryrun", world);
});

describe("dry run: git.dryRun for every target (Argo CD simulator)", function () {
  this.timeout(60_000);
  const world = worldFor(() => DeploymentWorld.start({ dryRun: true }));
  dryRunScenarios("sockshop", world);
});
