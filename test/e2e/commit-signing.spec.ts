import { expect } from "chai";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { loadConfig } from "../../src/config/load-config.js";
import { TargetResolver } from "../../src/deployments/targets.js";
import type { RepositoryRef } from "../../src/gitops-repo/gitops-repo.js";
import type { SimpleGitGitopsRepo } from "../../src/gitops-repo/simple-git-gitops-repo.js";
import { TerminalError } from "../../src/shared/errors.js";
import { createGitopsFixture, git, type GitopsFixture } from "../support/gitops-fixture.js";
import { quietRepo } from "../support/quiet-repo.js";

const run = promisify(execFile);
const AUTHOR = { name: "Keptn GitOps Service", email: "keptn-gitops@localhost" };

// Signed commits with real git, real ssh-keygen and real gpg, checked the way a protected branch would check them:
// `git verify-commit` in the bare repository, trusting only the public key.
describe("signed commits (real git, ssh-keygen and gpg)", function () {
  this.timeout(60_000);
  let dir: string;
  let fixture: GitopsFixture;
  let repo: SimpleGitGitopsRepo;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "signing-"));
    fixture = await createGitopsFixture({ "README.md": "# gitops\n" });
    repo = quietRepo(join(dir, "cache"));
  });
  afterEach(async () => {
    await repo.close();
    await fixture.remove();
    await rm(dir, { recursive: true, force: true });
  });

  /** Commits through the configuration, as the service does: `repositories[].signing` read, the target resolved. */
  const commitWith = async (signing: RepositoryRef["signing"]) => {
    const config = loadConfig({
      text: `
repositories:
  - name: gitops
    url: "file://${fixture.bareDir}"
${signing ? `    signing: { format: ${signing.format}, key: { fromEnv: SIGNING_KEY } }\n` : ""}argocd: { servers: [{ name: main, url: "https://argocd.example.com", token: { fromEnv: T } }] }
targets:
  - { repository: gitops, file: README.md, change: { kind: values-merge }, deploy: { tool: argocd, server: main } }
`,
      source: "config.yaml",
      env: { T: "argo-token-123", ...(signing ? { SIGNING_KEY: signing.key } : {}) },
    });
    const { repository } = new TargetResolver(config).resolve({ project: "p", stage: "s", service: "x" });
    const outcome = await repo.applyChange({
      repository,
      files: [
        {
          file: "README.md",
          edit: (text) => ({ text: `${text}\nsigned\n`, changes: ["README.md: a line"] }),
        },
      ],
      message: () => "A signed change",
    });
    expect(outcome.committed).to.equal(true);
    return outcome.commit;
  };

  it("signs with an SSH key (gpg.format ssh), verified against an allowed-signers file", async () => {
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "keptn", "-f", join(dir, "signer")]);
    const key = await readFile(join(dir, "signer"), "utf8");
    const publicKey = (await readFile(join(dir, "signer.pub"), "utf8")).trim();
    const sha = await commitWith({ format: "ssh", key });

    await writeFile(join(dir, "allowed_signers"), `${AUTHOR.email} ${publicKey}\n`);
    const { stderr } = await run("git", [
      "--git-dir",
      fixture.bareDir,
      "-c",
      `gpg.ssh.allowedSignersFile=${join(dir, "allowed_signers")}`,
      "verify-commit",
      "-v",
      sha,
    ]);
    expect(stderr).to.include(`Good "git" signature for ${AUTHOR.email}`);
  });

  it("signs with an OpenPGP key imported into a keyring of its own, verified with the public key alone", async () => {
    const maker = join(dir, "maker-gnupg");
    await run("mkdir", ["-m", "700", maker]);
    const gpg = (args: string[]) =>
      run("gpg", ["--batch", "--no-tty", "--homedir", maker, ...args], { maxBuffer: 1 << 20 });
    await gpg(["--passphrase", "", "--quick-gen-key", `Keptn <${AUTHOR.email}>`, "ed25519", "sign", "never"]);
    const secretKey = (await gpg(["--armor", "--export-secret-keys", AUTHOR.email])).stdout;
    const publicKey = (await gpg(["--armor", "--export", AUTHOR.email])).stdout;
    const sha = await commitWith({ format: "openpgp", key: secretKey });

    const verifier = join(dir, "verifier-gnupg");
    await run("mkdir", ["-m", "700", verifier]);
    await writeFile(join(dir, "public.asc"), publicKey);
    await run("gpg", ["--batch", "--homedir", verifier, "--import", join(dir, "public.asc")]);
    const { stderr } = await run("git", ["--git-dir", fixture.bareDir, "verify-commit", sha], {
      env: { ...process.env, GNUPGHOME: verifier },
    });
    expect(stderr).to.include(`Good signature from "Keptn <${AUTHOR.email}>"`);
  });

  it("leaves commits unsigned without signing, and refuses a key gpg cannot use, with what to give", async () => {
    const sha = await commitWith(undefined);
    const unsigned = await git(["--git-dir", fixture.bareDir, "verify-commit", sha]).then(
      () => "verified",
      () => "not signed",
    );
    expect(unsigned).to.equal("not signed");
    try {
      await commitWith({
        format: "openpgp",
        key: "-----BEGIN PGP PRIVATE KEY BLOCK-----\nnot a key\n-----END PGP PRIVATE KEY BLOCK-----\n",
      });
      expect.fail("a commit was made");
    } catch (error) {
      expect(error).to.be.instanceOf(TerminalError);
      expect((error as Error).message).to.include(
        'the OpenPGP signing key of repository "gitops" could not be used',
      );
    }
  });
});
