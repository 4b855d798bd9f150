import { expect } from "chai";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RepositoryRef } from "../../src/gitops-repo/gitops-repo.js";
import type { SimpleGitGitopsRepo } from "../../src/gitops-repo/simple-git-gitops-repo.js";
import { TerminalError } from "../../src/shared/errors.js";
import { GitHttpServer } from "../support/git-http-server.js";
import { createGitopsFixture, gitLog, type GitopsFixture } from "../support/gitops-fixture.js";
import { quietRepo } from "../support/quiet-repo.js";

const TOKEN = "bearer-style-token-5c7e9a1b";

// A token sent as HTTP Basic (GitHub, GitLab) or as a bearer token (Bitbucket, Azure DevOps), over real
// `git http-backend` behind a server that takes either.
describe("HTTPS token schemes (real git over smart HTTP)", function () {
  this.timeout(60_000);
  let dir: string;
  let fixture: GitopsFixture;
  let server: GitHttpServer;
  let repo: SimpleGitGitopsRepo;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "auth-schemes-"));
    fixture = await createGitopsFixture({ "README.md": "# gitops\n" });
    server = await GitHttpServer.start({ projectRoot: join(fixture.root, "repos"), token: TOKEN });
    repo = quietRepo(join(dir, "cache"));
  });
  after(async () => {
    await repo.close();
    await server?.stop();
    await fixture?.remove();
    await rm(dir, { recursive: true, force: true });
  });

  const change = (repository: RepositoryRef, line: string) =>
    repo.applyChange({
      repository,
      files: [
        {
          file: "README.md",
          edit: (text) => ({ text: `${text}${line}\n`, changes: [`README.md: ${line}`] }),
        },
      ],
      message: () => line,
    });

  for (const scheme of ["basic", "bearer"] as const) {
    it(`pushes with the token sent as ${scheme}`, async () => {
      const repository: RepositoryRef = {
        name: `gitops-${scheme}`,
        url: server.repoUrl("gitops.git"),
        branch: "main",
        auth: { username: "x-access-token", token: TOKEN, scheme },
      };
      const outcome = await change(repository, `pushed with ${scheme}`);
      expect((await gitLog(fixture.bareDir))[0]?.sha).to.equal(outcome.commit);
      const ours = server.requests.filter((r) => r.path.startsWith("/gitops.git/"));
      expect(ours.every((r) => r.authorized)).to.equal(true);
    });
  }

  it("answers a wrong bearer token at once, with the repository to check", async () => {
    const repository: RepositoryRef = {
      name: "gitops-wrong",
      url: server.repoUrl("gitops.git"),
      branch: "main",
      auth: { username: "x-access-token", token: "not-the-token-1234", scheme: "bearer" },
    };
    try {
      await change(repository, "never");
      expect.fail("the change was pushed");
    } catch (error) {
      expect(error).to.be.instanceOf(TerminalError);
      expect((error as Error).message)
        .to.include('check the token of repository "gitops-wrong"')
        .and.not.include("not-the-token-1234");
    }
  });
});
