import { expect } from "chai";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { groupCommitMessage } from "../../src/deployments/commit-message.js";
import { editFile } from "../../src/gitops-repo/editors/editors.js";
import type { ChangeRequest, RepositoryRef } from "../../src/gitops-repo/gitops-repo.js";
import { parseImageReference } from "../../src/gitops-repo/image-reference.js";
import type { SimpleGitGitopsRepo } from "../../src/gitops-repo/simple-git-gitops-repo.js";
import { classifyGitFailure } from "../../src/gitops-repo/simple-git-gitops-repo.js";
import { TerminalError } from "../../src/shared/errors.js";
import {
  createGitopsFixture,
  defaultGitopsFiles,
  git,
  gitLog,
  readFileAt,
  type GitopsFixture,
} from "../support/gitops-fixture.js";
import { quietRepo } from "../support/quiet-repo.js";

const CARTS_DEV = "charts/carts/values-dev.yaml";
const ORDERS_DEV = "charts/orders/values-dev.yaml";

/** A helm-values change of `image.tag` in `file`, as the deployment handler builds it. */
function tagChange(repository: RepositoryRef, file: string, image: string, id: string): ChangeRequest {
  return {
    repository,
    files: [
      {
        file,
        edit: (text) =>
          editFile(
            text,
            file,
            { kind: "helm-values", tag: "image.tag" },
            { image: parseImageReference(image), values: {} },
          ),
      },
    ],
    message: (changed) =>
      `Deploy ${image}\n\nChanged in ${file}:\n${changed
        .flatMap((f) => f.changes)
        .map((c) => `  ${c}`)
        .join("\n")}\n\nKeptn-Triggered-Id: ${id}\n`,
    groupMessage: groupCommitMessage,
  };
}

describe("SimpleGitGitopsRepo: changes queued together go into one commit (real git)", function () {
  this.timeout(30_000);
  let dir: string;
  let fixture: GitopsFixture;
  let repo: SimpleGitGitopsRepo;
  let repository: RepositoryRef;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "gitops-groups-"));
    fixture = await createGitopsFixture(defaultGitopsFiles);
    repo = quietRepo(join(dir, "cache"));
    repository = { name: "gitops", url: `file://${fixture.bareDir}`, branch: "main" };
  });
  afterEach(async () => {
    await repo.close();
    await fixture.remove();
    await rm(dir, { recursive: true, force: true });
  });

  it("commits changes queued in the same turn once, with every message's trailers; a bad change fails alone", async () => {
    const before = (await gitLog(fixture.bareDir))[0]!.sha;
    const outcomes = await Promise.allSettled([
      repo.applyChange(tagChange(repository, CARTS_DEV, "carts:1.1.0", "t1")),
      repo.applyChange(tagChange(repository, "charts/carts/no-such-values.yaml", "carts:1.1.0", "t2")),
      repo.applyChange(tagChange(repository, ORDERS_DEV, "orders:2.0.0", "t3")),
      repo.applyChange(tagChange(repository, "README.md", "carts:1.1.0", "t4")),
    ]);
    const [carts, missing, orders, readme] = outcomes;
    expect(missing).to.have.property("status", "rejected");
    expect((missing as PromiseRejectedResult).reason).to.be.instanceOf(TerminalError);
    expect(String((missing as PromiseRejectedResult).reason)).to.include("does not exist on branch main");
    expect(readme).to.have.property("status", "rejected");
    expect(carts).to.have.property("status", "fulfilled");
    expect(orders).to.have.property("status", "fulfilled");
    const cartsOutcome = (carts as PromiseFulfilledResult<{ commit: string; committed: boolean }>).value;
    const ordersOutcome = (orders as PromiseFulfilledResult<{ commit: string; committed: boolean }>).value;
    expect(cartsOutcome.commit).to.equal(ordersOutcome.commit);
    expect(cartsOutcome.committed).to.equal(true);

    const log = await gitLog(fixture.bareDir);
    expect(log[1]!.sha, "one commit for the group").to.equal(before);
    expect(log[0]!.sha).to.equal(cartsOutcome.commit);
    expect(log[0]!.subject).to.equal("Deploy 2 changes from Keptn");
    const trailers = await git([
      "--git-dir",
      fixture.bareDir,
      "log",
      "-1",
      "--format=%(trailers:key=Keptn-Triggered-Id,valueonly)",
    ]);
    expect(trailers.trim().split("\n")).to.deep.equal(["t1", "t3"]);
    expect(await readFileAt(fixture.bareDir, "main", CARTS_DEV)).to.include('tag: "1.1.0"');
    expect(await readFileAt(fixture.bareDir, "main", ORDERS_DEV)).to.include("tag: 2.0.0");
  });

  it("applies two changes to the same file in order (the later wins), and answers one that changes nothing with the commit", async () => {
    const [first, second, same] = await Promise.all([
      repo.applyChange(tagChange(repository, CARTS_DEV, "carts:1.2.0", "a")),
      repo.applyChange(tagChange(repository, CARTS_DEV, "carts:1.3.0", "b")),
      repo.applyChange(tagChange(repository, CARTS_DEV, "carts:1.3.0", "c")),
    ]);
    expect(first.commit).to.equal(second.commit).and.to.equal(same.commit);
    expect([first.committed, second.committed, same.committed]).to.deep.equal([true, true, false]);
    expect(second.files).to.deep.equal([{ file: CARTS_DEV, changes: ["image.tag: 1.2.0 -> 1.3.0"] }]);
    expect(await readFileAt(fixture.bareDir, "main", CARTS_DEV)).to.include('tag: "1.3.0"');
    const log = await gitLog(fixture.bareDir);
    expect(log).to.have.length(2);
  });

  it("commits each change alone with maxChangesPerCommit 1, and a request without groupMessage alone", async () => {
    const single = quietRepo(join(dir, "cache-single"), 1);
    const outcomes = await Promise.all([
      single.applyChange(tagChange(repository, CARTS_DEV, "carts:1.4.0", "x")),
      single.applyChange(tagChange(repository, ORDERS_DEV, "orders:1.4.0", "y")),
    ]);
    expect(outcomes[0].commit).not.to.equal(outcomes[1].commit);
    const alone: ChangeRequest = { ...tagChange(repository, CARTS_DEV, "carts:1.5.0", "z") };
    delete alone.groupMessage;
    const grouped = await Promise.all([
      repo.applyChange(alone),
      repo.applyChange(tagChange(repository, ORDERS_DEV, "orders:1.5.0", "w")),
    ]);
    expect(grouped[0].commit).not.to.equal(grouped[1].commit);
    expect(await gitLog(fixture.bareDir)).to.have.length(5);
    await single.close();
  });

  it("commits several files of one change together, and none of them when one cannot be edited", async () => {
    const both = tagChange(repository, CARTS_DEV, "carts:2.0.0", "m1");
    const orders = tagChange(repository, ORDERS_DEV, "orders:2.0.0", "m1");
    const outcome = await repo.applyChange({ ...both, files: [...both.files, ...orders.files] });
    expect(outcome.files.map((f) => f.file)).to.deep.equal([CARTS_DEV, ORDERS_DEV]);
    const changed = await git([
      "--git-dir",
      fixture.bareDir,
      "show",
      "--name-only",
      "--format=",
      outcome.commit,
    ]);
    expect(changed.trim().split("\n")).to.deep.equal([CARTS_DEV, ORDERS_DEV]);

    const head = (await gitLog(fixture.bareDir))[0]!.sha;
    const broken = tagChange(repository, CARTS_DEV, "carts:2.1.0", "m2");
    const missing = tagChange(repository, "charts/carts/no-such-values.yaml", "carts:2.1.0", "m2");
    const refused = await repo
      .applyChange({ ...broken, files: [...broken.files, ...missing.files] })
      .catch((e: unknown) => e);
    expect(String(refused)).to.include("no-such-values.yaml does not exist on branch main");
    // the next change of the same clone commits only its own edit: the first file of the refused one was not written
    const next = await repo.applyChange(tagChange(repository, ORDERS_DEV, "orders:2.1.0", "m3"));
    expect((await gitLog(fixture.bareDir))[1]!.sha).to.equal(head);
    expect(await readFileAt(fixture.bareDir, next.commit, CARTS_DEV)).to.include('tag: "2.0.0"');
  });

  it("pushes a change with pushTo to that branch, made on the head of main, replacing what the branch held", async () => {
    const main = (await gitLog(fixture.bareDir))[0]!.sha;
    const first = await repo.applyChange({
      ...tagChange(repository, CARTS_DEV, "carts:3.0.0", "b1"),
      pushTo: "keptn/sockshop/dev/carts",
    });
    const second = await repo.applyChange({
      ...tagChange(repository, CARTS_DEV, "carts:3.1.0", "b2"),
      pushTo: "keptn/sockshop/dev/carts",
    });
    expect((await gitLog(fixture.bareDir))[0]!.sha, "main is untouched").to.equal(main);
    const branch = await gitLog(fixture.bareDir, "keptn/sockshop/dev/carts");
    expect(branch[0]!.sha).to.equal(second.commit);
    expect(branch[1]!.sha, "the second commit replaced the first, on top of main").to.equal(main);
    expect(first.commit).not.to.equal(second.commit);
    expect(await readFileAt(fixture.bareDir, second.commit, CARTS_DEV)).to.include('tag: "3.1.0"');
  });

  it("does a dry run: the diff of the file, the head as the commit, nothing pushed", async () => {
    const before = await gitLog(fixture.bareDir);
    const outcome = await repo.applyChange({
      ...tagChange(repository, CARTS_DEV, "carts:9.9.9", "d"),
      dryRun: true,
    });
    expect(outcome.committed).to.equal(false);
    expect(outcome.commit).to.equal(before[0]!.sha);
    expect(outcome.diff).to.include(`--- a/${CARTS_DEV}`).and.include(`+++ b/${CARTS_DEV}`);
    expect(outcome.diff)
      .to.include('-  tag: "0.13.1"   # bumped by Keptn')
      .and.include('+  tag: "9.9.9"   # bumped by Keptn');
    expect(await gitLog(fixture.bareDir)).to.deep.equal(before);
    // the clone is clean again: a real change afterwards commits only its own edit
    const real = await repo.applyChange(tagChange(repository, ORDERS_DEV, "orders:3.0.0", "r"));
    expect(await readFileAt(fixture.bareDir, real.commit, CARTS_DEV)).to.equal(defaultGitopsFiles[CARTS_DEV]);
  });

  it("answers a push refused by a server hook at once: GitLab's protected branch, and any other hook's reason", async () => {
    const hook = join(fixture.bareDir, "hooks", "pre-receive");
    await writeFile(
      hook,
      '#!/bin/sh\necho "GitLab: You are not allowed to push code to protected branches on this project." >&2\nexit 1\n',
    );
    await chmod(hook, 0o755);
    const refused = await repo
      .applyChange(tagChange(repository, CARTS_DEV, "carts:1.6.0", "p"))
      .catch((e: unknown) => e);
    expect(refused).to.be.instanceOf(TerminalError);
    expect(String(refused))
      .to.include("branch main is protected")
      .and.include("GitLab: You are not allowed to push code to protected branches on this project.");

    await writeFile(
      hook,
      '#!/bin/sh\necho "policy: images must come from registry.example.com" >&2\nexit 1\n',
    );
    const declined = await repo
      .applyChange(tagChange(repository, CARTS_DEV, "carts:1.6.0", "q"))
      .catch((e: unknown) => e);
    expect(declined).to.be.instanceOf(TerminalError);
    expect(String(declined)).to.include(
      "refused by a hook on the server, which said: policy: images must come from registry.example.com",
    );
  });
});

describe("classifyGitFailure: what git hosts say when a push is rejected", () => {
  const cases: Array<[string, string, ReturnType<typeof classifyGitFailure>]> = [
    [
      "plain git, branch moved",
      " ! [rejected]        HEAD -> main (fetch first)\nerror: failed to push some refs to 'https://git.example.com/gitops.git'\nhint: Updates were rejected because the remote contains work that you do not\n",
      "push-race",
    ],
    [
      "plain git, non-fast-forward",
      " ! [rejected]        HEAD -> main (non-fast-forward)\nerror: failed to push some refs to 'x'\n",
      "push-race",
    ],
    [
      "GitHub, concurrent update",
      " ! [remote rejected] HEAD -> main (cannot lock ref 'refs/heads/main': is at 1a2b but expected 3c4d)\nerror: failed to push some refs to 'https://github.com/org/gitops.git'\n",
      "push-race",
    ],
    [
      "GitHub, protected branch",
      "remote: error: GH006: Protected branch update failed for refs/heads/main.\nremote: error: Changes must be made through a pull request.\n ! [remote rejected] HEAD -> main (protected branch hook declined)\n",
      "protected-branch",
    ],
    [
      "GitHub, ruleset",
      "remote: error: GH013: Repository rule violations found for refs/heads/main.\n ! [remote rejected] HEAD -> main (push declined due to repository rule violations)\n",
      "protected-branch",
    ],
    [
      "GitLab, protected branch",
      "remote: GitLab: You are not allowed to push code to protected branches on this project.\nTo https://gitlab.com/org/gitops.git\n ! [remote rejected] HEAD -> main (pre-receive hook declined)\n",
      "protected-branch",
    ],
    [
      "GitLab, a push rule",
      "remote: GitLab: Commit message does not follow the pattern '^JIRA-'\n ! [remote rejected] HEAD -> main (pre-receive hook declined)\n",
      "hook-declined",
    ],
  ];
  for (const [name, stderr, expected] of cases) {
    it(`${name}: ${expected}`, () => {
      expect(classifyGitFailure(stderr)).to.equal(expected);
    });
  }
});
