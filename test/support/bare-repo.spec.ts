import { expect } from "chai";
import { commitToBare, createGitopsFixture, gitLog } from "./gitops-fixture.js";
import type { GitopsFixture } from "./gitops-fixture.js";
import { BareRepo, RefMovedError } from "./bare-repo.js";

describe("BareRepo (merge plumbing of the GitHub and GitLab simulators)", function () {
  this.timeout(15000);

  let fixture: GitopsFixture;
  const who = {
    author: { name: "A", email: "a@example.com" },
    committer: { name: "C", email: "c@example.com" },
  };

  beforeEach(async () => {
    fixture = await createGitopsFixture();
  });
  afterEach(() => fixture.remove());

  it("refuses to move a branch that moved since it was read, and keeps the other writer's commit", async () => {
    const repo = new BareRepo(fixture.bareDir);
    const head = await commitToBare(fixture.bareDir, { "a.txt": "a\n" }, "feature", { branch: "feature" });
    const base = (await repo.branchHead("main")) ?? "";
    const merged = await repo.mergeTree(base, head);
    if (!merged.clean) throw new Error("expected a clean merge");
    const commit = await repo.commitTree(merged.tree, [base, head], "merge", who);

    const pushed = await commitToBare(fixture.bareDir, { "b.txt": "b\n" }, "pushed meanwhile");
    let refused: unknown;
    await repo.moveBranch("main", commit, base, "merge").catch((error: unknown) => (refused = error));
    expect(refused).to.be.instanceOf(RefMovedError);
    expect((await gitLog(fixture.bareDir))[0]?.sha).to.equal(pushed);
  });

  it("reports a conflict from merge-tree, and undefined for a missing branch", async () => {
    const repo = new BareRepo(fixture.bareDir);
    const theirs = await commitToBare(fixture.bareDir, { "README.md": "theirs\n" }, "theirs", {
      branch: "other",
    });
    const ours = await commitToBare(fixture.bareDir, { "README.md": "ours\n" }, "ours");
    expect(await repo.mergeTree(ours, theirs)).to.deep.equal({ clean: false });
    expect(await repo.branchHead("no/such/branch")).to.equal(undefined);
  });
});
