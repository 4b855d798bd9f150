import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { connect, type NatsConnection } from "nats";
import { buildApp, type App } from "../../src/app.js";
import { ConfigError, loadConfig } from "../../src/config/load-config.js";
import { childProcessEnvironment } from "../../src/config/process-env.js";
import type { RepositoryRef } from "../../src/gitops-repo/gitops-repo.js";
import { SimpleGitGitopsRepo } from "../../src/gitops-repo/simple-git-gitops-repo.js";
import { createLogger } from "../../src/shared/logger.js";
import { SecretRegistry } from "../../src/shared/secrets.js";
import { simulatorBackend, type ArgoCdBackend } from "./argocd-backend.js";
import type { KeptnEvent } from "./world.js";
import {
  createGitopsFixture,
  defaultGitopsFiles,
  gitLog,
  readFileAt,
  type GitopsFixture,
} from "../support/gitops-fixture.js";
import { NatsServerProcess } from "../support/nats-server.js";
import { SshGitServer, type SshKeyPair } from "../support/ssh-git-server.js";
import { subscribeCollector, waitFor, type EventCollector } from "../support/wait.js";

/** The lines of a private key that carry key material (not the BEGIN/END lines). */
function keyBody(key: SshKeyPair): string[] {
  return key.privateKey
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("-----"));
}

/**
 * The service against a real sshd: NATS in, git over SSH, the Argo CD simulator reading the same bare repository.
 * Four repositories share the one URL and differ in their credentials: the authorized key, a key sshd does not
 * know, known_hosts without this host, and known_hosts with another key for this host.
 */
class SshWorld {
  readonly logLines: string[] = [];

  private constructor(
    readonly nats: NatsServerProcess,
    readonly fixture: GitopsFixture,
    readonly sshd: SshGitServer,
    readonly argo: ArgoCdBackend,
    readonly keptn: NatsConnection,
    readonly answers: EventCollector,
    readonly dir: string,
    private app: App | undefined,
  ) {}

  static async start(): Promise<SshWorld> {
    const nats = await NatsServerProcess.start();
    const fixture = await createGitopsFixture(defaultGitopsFiles);
    const sshd = await SshGitServer.start({ projectRoot: join(fixture.root, "repos") });
    const repoUrl = sshd.repoUrl("gitops.git");
    const argo = await simulatorBackend()({
      bareDir: fixture.bareDir,
      repoUrl,
      gitUsername: sshd.user,
      gitToken: "",
    });
    const keptn = await connect({ servers: nats.url });
    const answers = await subscribeCollector(keptn, "sh.keptn.event.deployment.*");
    const dir = await mkdtemp(join(tmpdir(), "gitops-ssh-"));
    const world = new SshWorld(nats, fixture, sshd, argo, keptn, answers, dir, undefined);
    await world.startService();
    return world;
  }

  private async startService(): Promise<void> {
    // From a file, as a mounted Kubernetes Secret: read trimmed, so without the newline OpenSSH wants at the end.
    const keyFile = join(this.dir, "service-key");
    await writeFile(keyFile, this.sshd.clientKey.privateKey, { mode: 0o600 });
    const url = this.sshd.repoUrl("gitops.git");
    const sshRepository = (name: string, key: string, knownHosts: string) => `
  - name: ${name}
    url: ${url}
    auth: { ssh: { privateKey: ${key}, knownHosts: { fromEnv: ${knownHosts} } } }`;
    const target = (project: string, repository: string) => `
  - match: { project: ${project} }
    repository: ${repository}
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: lab }`;
    const config = loadConfig({
      text: `
http: { host: 127.0.0.1, port: 0 }
log: { level: debug }
git: { cacheDir: ${join(this.dir, "cache")} }
repositories:${sshRepository("gitops-ssh", `{ fromFile: ${keyFile} }`, "TEST_KNOWN_HOSTS")}${sshRepository(
        "gitops-ssh-wrong-key",
        "{ fromEnv: TEST_WRONG_KEY }",
        "TEST_KNOWN_HOSTS",
      )}${sshRepository("gitops-ssh-unknown-host", "{ fromEnv: TEST_KEY }", "TEST_OTHER_HOSTS")}${sshRepository(
        "gitops-ssh-changed-host",
        "{ fromEnv: TEST_KEY }",
        "TEST_CHANGED_HOSTS",
      )}
argocd:
  servers:
    - { name: lab, url: ${this.argo.url}, token: { fromEnv: TEST_ARGO_TOKEN }, pollInterval: 50ms }
targets:${target("sockshop", "gitops-ssh")}${target("locked", "gitops-ssh-wrong-key")}${target(
        "stranger",
        "gitops-ssh-unknown-host",
      )}${target("impostor", "gitops-ssh-changed-host")}
`,
      source: "ssh test config",
      env: {
        NATS_URL: this.nats.url,
        TEST_ARGO_TOKEN: this.argo.token,
        TEST_KEY: this.sshd.clientKey.privateKey,
        TEST_WRONG_KEY: this.sshd.wrongKey.privateKey,
        TEST_KNOWN_HOSTS: this.sshd.knownHosts(),
        // Another host (port 1) only: this one is unknown.
        TEST_OTHER_HOSTS: `[127.0.0.1]:1 ${this.sshd.hostPublicKey}`,
        // This host with another key, as after a man-in-the-middle or a reinstalled server.
        TEST_CHANGED_HOSTS: `[127.0.0.1]:${this.sshd.port} ${this.sshd.wrongKey.publicKey}`,
      },
    });
    const lines = this.logLines;
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
        done();
      },
    });
    const secrets = new SecretRegistry();
    this.app = buildApp({ config, logger: createLogger({ level: "debug", secrets, destination }), secrets });
    await this.app.start();
  }

  /** Publishes deployment.triggered for carts in dev of `project`; resolves with the .finished answer. */
  async deploy(
    project: string,
    image: string,
  ): Promise<{ finished: KeptnEvent; id: string; context: string }> {
    const id = randomUUID();
    const context = randomUUID();
    const event = {
      specversion: "1.0",
      id,
      type: "sh.keptn.event.deployment.triggered",
      source: "shipyard-controller",
      datacontenttype: "application/json",
      time: new Date().toISOString(),
      shkeptncontext: context,
      shkeptnspecversion: "0.2.4",
      data: {
        project,
        stage: "dev",
        service: "carts",
        configurationChange: { values: { image } },
        deployment: { deploymentstrategy: "direct" },
      },
    };
    this.keptn.publish(
      "sh.keptn.event.deployment.triggered",
      new TextEncoder().encode(JSON.stringify(event)),
    );
    const finished = (await this.answers.waitFor(
      (e) =>
        (e as KeptnEvent).triggeredid === id &&
        (e as KeptnEvent).type === "sh.keptn.event.deployment.finished",
      20_000,
      `deployment.finished for ${id}`,
    )) as KeptnEvent;
    return { finished, id, context };
  }

  async stop(): Promise<void> {
    await this.app?.stop();
    await this.answers.close();
    await this.keptn.close();
    await this.argo.stop();
    await this.sshd.stop();
    await this.nats.stop();
    await this.fixture.remove();
    await rm(this.dir, { recursive: true, force: true });
  }
}

describe("git over SSH (NATS -> git over a real sshd -> Argo CD simulator)", function () {
  this.timeout(60_000);
  let world: SshWorld | undefined;
  const w = () => {
    if (!world) throw new Error("the world did not start");
    return world;
  };
  before(async function () {
    this.timeout(120_000);
    world = await SshWorld.start();
  });
  after(async () => {
    await world?.stop();
  });

  it("deploys through a repository reached with the authorized key: the commit lands in the bare repository", async () => {
    const { finished, id } = await w().deploy("sockshop", "docker.io/keptnexamples/carts:0.13.3");
    expect(finished.data, finished.data.message).to.include({ status: "succeeded", result: "pass" });
    const [commit] = await gitLog(w().fixture.bareDir);
    expect(commit?.body).to.include(`Keptn-Triggered-Id: ${id}`);
    expect(finished.data.message).to.include(`as ${commit?.sha.slice(0, 7)}`);
    const values = await readFileAt(w().fixture.bareDir, "main", "charts/carts/values-dev.yaml");
    expect(values).to.include('tag: "0.13.3"   # bumped by Keptn');
  });

  it("answers errored for a key the server refuses, says to check the key, and does not retry", async () => {
    const before = (await gitLog(w().fixture.bareDir))[0]?.sha;
    const { finished } = await w().deploy("locked", "docker.io/keptnexamples/carts:0.13.4");
    expect(finished.data).to.include({ status: "errored", result: "fail" });
    expect(finished.data.message)
      .to.include("the server did not accept the SSH key")
      .and.include('check the key of repository "gitops-ssh-wrong-key" (repositories[].auth.ssh.privateKey)');
    expect((await gitLog(w().fixture.bareDir))[0]?.sha).to.equal(before);
    // One refused login: a refused key is an answer, not a network error worth three more tries.
    const refusals = () => w().sshd.output.match(/Failed publickey for /g)?.length ?? 0;
    await waitFor(() => refusals() > 0, { timeoutMs: 5_000, what: "sshd to log the refused key" });
    expect(refusals(), w().sshd.output).to.equal(1);
  });

  it("answers errored for a host missing from knownHosts, saying to check knownHosts", async () => {
    const { finished } = await w().deploy("stranger", "docker.io/keptnexamples/carts:0.13.5");
    expect(finished.data).to.include({ status: "errored", result: "fail" });
    expect(finished.data.message)
      .to.include("the server's SSH host key is not in known_hosts or has changed")
      .and.include('check knownHosts of repository "gitops-ssh-unknown-host"');
  });

  it("answers errored for a host whose key has changed, saying to check knownHosts", async () => {
    const { finished } = await w().deploy("impostor", "docker.io/keptnexamples/carts:0.13.6");
    expect(finished.data).to.include({ status: "errored", result: "fail" });
    expect(finished.data.message).to.include('check knownHosts of repository "gitops-ssh-changed-host"');
  });

  it("shows neither private key in any event or log line", () => {
    const events = w().answers.events.map((event) => JSON.stringify(event));
    expect(w().logLines.length).to.be.greaterThan(0);
    for (const line of [...keyBody(w().sshd.clientKey), ...keyBody(w().sshd.wrongKey)]) {
      for (const text of [...events, ...w().logLines]) expect(text).not.to.include(line);
    }
    expect(w().logLines.join("\n")).not.to.include("PRIVATE KEY");
  });
});

describe("SSH key files of SimpleGitGitopsRepo", function () {
  this.timeout(30_000);
  let dir = "";
  let fixture: GitopsFixture | undefined;
  let sshd: SshGitServer | undefined;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "gitops-ssh-files-"));
    fixture = await createGitopsFixture(defaultGitopsFiles);
    sshd = await SshGitServer.start({ projectRoot: join(fixture.root, "repos") });
  });
  after(async () => {
    await sshd?.stop();
    await fixture?.remove();
    await rm(dir, { recursive: true, force: true });
  });

  it("keeps key and known_hosts in a private directory (0700, files 0600) out of the clone, and removes them on close", async () => {
    const secrets = new SecretRegistry();
    const logLines: string[] = [];
    const sshDir = join(dir, "ssh");
    const repo = new SimpleGitGitopsRepo({
      cacheDir: join(dir, "cache"),
      author: { name: "Keptn GitOps Service", email: "keptn-gitops@localhost" },
      pushAttempts: 5,
      commandTimeoutMs: 30_000,
      baseEnv: childProcessEnvironment(),
      logger: createLogger({
        level: "debug",
        secrets,
        destination: new Writable({
          write(chunk: Buffer, _encoding, done) {
            logLines.push(chunk.toString("utf8"));
            done();
          },
        }),
      }),
      secrets,
      sshDir,
    });
    const repository: RepositoryRef = {
      name: "gitops-ssh",
      url: sshd!.repoUrl("gitops.git"),
      branch: "main",
      auth: {
        ssh: {
          privateKey: sshd!.clientKey.privateKey.trim(),
          knownHosts: sshd!.knownHosts(),
          strictHostKeyChecking: true,
        },
      },
    };
    const outcome = await repo.applyChange({
      repository,
      files: [
        {
          file: "README.md",
          edit: (text) => ({ text: `${text}\nDeployed over SSH.\n`, changes: ["README.md: a line"] }),
        },
      ],
      message: () => "Append a line over SSH",
    });
    expect(outcome.committed).to.equal(true);
    expect((await gitLog(fixture!.bareDir))[0]?.sha).to.equal(outcome.commit);

    // <sshDir>/<repository name>: the directory 0700, the files 0600, nothing else there.
    expect(await readdir(sshDir)).to.deep.equal(["gitops-ssh"]);
    const privateDir = join(sshDir, "gitops-ssh");
    expect((await stat(privateDir)).mode & 0o777).to.equal(0o700);
    expect((await readdir(privateDir)).sort()).to.deep.equal(["id", "known_hosts"]);
    for (const file of ["id", "known_hosts"]) {
      expect((await stat(join(privateDir, file))).mode & 0o777, file).to.equal(0o600);
    }
    expect(await readFile(join(privateDir, "id"), "utf8")).to.equal(sshd!.clientKey.privateKey);
    const [clone] = await readdir(join(dir, "cache"));
    const gitConfig = await readFile(join(dir, "cache", clone!, ".git", "config"), "utf8");
    expect(gitConfig).not.to.match(/ssh -|sshCommand|PRIVATE KEY/);
    expect(logLines.join("")).not.to.include(keyBody(sshd!.clientKey)[0]);

    await repo.close();
    expect(await readdir(dir)).to.deep.equal(["cache"]);
  });
});

describe("configuration of SSH repositories", () => {
  const key =
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
  const env = {
    KEY: key,
    HOSTS: "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
  };
  const text = (url: string, auth: string) => `
repositories:
  - name: gitops
    url: ${url}
    auth: ${auth}
argocd:
  servers: [{ name: main, url: "https://argocd.example.com", token: { fromEnv: KEY } }]
targets:
  - repository: gitops
    file: values.yaml
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: main }
`;
  const problemsOf = (config: string, environment: Record<string, string> = env): string[] => {
    try {
      loadConfig({ text: config, source: "config.yaml", env: environment });
      return [];
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
  };

  it("reads the key and known hosts of an ssh:// or git@host:path repository; strict host key checking is on by default", () => {
    for (const url of ["ssh://git@github.com/org/gitops.git", "git@github.com:org/gitops.git"]) {
      const config = loadConfig({
        text: text(url, "{ ssh: { privateKey: { fromEnv: KEY }, knownHosts: { fromEnv: HOSTS } } }"),
        source: "config.yaml",
        env,
      });
      expect(config.repositories[0]?.auth).to.deep.equal({
        ssh: { privateKey: key, knownHosts: env.HOSTS, strictHostKeyChecking: true },
      });
    }
  });

  it("says what to fix: a token for an SSH URL, a key for an HTTPS URL, no knownHosts, no key, a user name", () => {
    expect(problemsOf(text("git@github.com:org/gitops.git", "{ token: { fromEnv: KEY } }"))).to.deep.equal([
      "repositories.0.auth.token: git@github.com:org/gitops.git is an SSH URL, which takes auth.ssh (a private key); use the https:// URL of the repository with a token",
    ]);
    expect(
      problemsOf(
        text(
          "https://github.com/org/gitops.git",
          "{ ssh: { privateKey: { fromEnv: KEY }, knownHosts: { fromEnv: HOSTS } } }",
        ),
      ),
    ).to.deep.equal([
      "repositories.0.auth.ssh: an SSH key works with ssh:// and git@host:path URLs only; use the SSH URL of the repository, or auth.token with https://github.com/org/gitops.git",
    ]);
    expect(
      problemsOf(text("ssh://git@github.com/org/gitops.git", "{ ssh: { privateKey: { fromEnv: KEY } } }")),
    ).to.deep.equal([
      "repositories.0.auth.ssh.knownHosts: give knownHosts (the lines ssh-keyscan -p <port> <host> prints), or set strictHostKeyChecking: false to trust any host key",
    ]);
    expect(
      problemsOf(
        text(
          "ssh://git@github.com/org/gitops.git",
          "{ ssh: { privateKey: { fromEnv: HOSTS }, strictHostKeyChecking: false } }",
        ),
      ),
    ).to.deep.equal([
      "repositories.0.auth.ssh.privateKey: the secret is not a private key; give the whole key file, from its -----BEGIN ... PRIVATE KEY----- line to its -----END line",
    ]);
    expect(
      problemsOf(
        text(
          "ssh://git@github.com/org/gitops.git",
          "{ username: git, ssh: { privateKey: { fromEnv: KEY }, knownHosts: { fromEnv: HOSTS } } }",
        ),
      ),
    ).to.deep.equal([
      "repositories.0.auth.username: with ssh the user name is part of the URL (ssh://git@host/path); remove auth.username",
    ]);
    expect(
      problemsOf(
        text(
          "ssh://git@github.com/org/gitops.git",
          "{ ssh: { privateKey: { fromEnv: MISSING }, knownHosts: { fromEnv: HOSTS } } }",
        ),
      ),
    ).to.deep.equal([
      "repositories.0.auth.ssh.privateKey: the environment variable MISSING is not set or empty",
    ]);
  });

  it("asks for auth.ssh on an SSH URL, and refuses a password in it", () => {
    const withoutAuth = text("ssh://git@github.com/org/gitops.git", "{}").replace("    auth: {}\n", "");
    expect(problemsOf(withoutAuth)).to.deep.equal([
      "repositories.0.auth: ssh://git@github.com/org/gitops.git is an SSH URL: give auth.ssh with the private key and knownHosts",
    ]);
    const withPassword = text(
      "ssh://git:hunter22@github.com/org/gitops.git",
      "{ ssh: { privateKey: { fromEnv: KEY }, knownHosts: { fromEnv: HOSTS } } }",
    );
    expect(problemsOf(withPassword)).to.deep.equal([
      "repositories.0.url: an SSH URL takes a user name only (ssh://git@host/path); the key goes in auth.ssh.privateKey",
    ]);
  });
});
