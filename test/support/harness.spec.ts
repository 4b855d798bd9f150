import { expect } from "chai";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "nats";
import { basicAuth, GitHttpServer } from "./git-http-server.js";
import {
  commitToBare,
  createGitopsFixture,
  defaultGitopsFiles,
  fixtureAuthor,
  git,
  GitCommandError,
  gitLog,
  type GitopsFixture,
  otherWriter,
  readFileAt,
} from "./gitops-fixture.js";
import { NatsServerProcess } from "./nats-server.js";
import { subscribeCollector, waitFor } from "./wait.js";

/** Runs `fn`, expecting it to reject, and returns the error. */
async function rejectionOf(fn: () => Promise<unknown>): Promise<Error> {
  try {
    await fn();
  } catch (error) {
    if (error instanceof Error) return error;
    throw new Error(`rejected with a non-Error: ${String(error)}`, { cause: error });
  }
  throw new Error("expected a rejection, but it resolved");
}

describe("test harness", function () {
  this.timeout(10_000);

  describe("waitFor", () => {
    it("resolves with the first value the probe returns", async () => {
      let calls = 0;
      const value = await waitFor(() => (++calls >= 3 ? `after ${calls}` : undefined), {
        timeoutMs: 1000,
        intervalMs: 1,
        what: "three calls",
      });
      expect(value).to.equal("after 3");
    });

    it("treats false and thrown errors as not yet, and times out with what it waited for", async () => {
      const error = await rejectionOf(() =>
        waitFor(
          () => {
            throw new Error("connection refused");
          },
          { timeoutMs: 50, intervalMs: 5, what: "the impossible" },
        ),
      );
      expect(error.message).to.equal("timed out after 50ms waiting for the impossible");
      expect((error.cause as Error).message).to.equal("connection refused");
      await rejectionOf(() => waitFor(() => false, { timeoutMs: 20, what: "never true" }));
    });
  });

  describe("NatsServerProcess", () => {
    let server: NatsServerProcess | undefined;
    let nc: NatsConnection | undefined;

    afterEach(async () => {
      await nc?.close();
      await server?.stop();
      nc = undefined;
      server = undefined;
    });

    it("starts on a free loopback port and carries a pub/sub round trip", async () => {
      server = await NatsServerProcess.start();
      expect(server.url).to.equal(`nats://127.0.0.1:${server.port}`);
      nc = await connect({ servers: server.url });
      const collector = await subscribeCollector(nc, "sh.keptn.event.>");
      const publisher = await connect({ servers: server.url });
      publisher.publish(
        "sh.keptn.event.dev.deployment.triggered",
        JSON.stringify({ type: "triggered", n: 1 }),
      );
      publisher.publish("sh.keptn.event.dev.deployment.started", "not json");
      await publisher.drain();

      const event = await collector.waitFor(
        (e) => (e as { n?: number }).n === 1,
        2000,
        "the triggered event",
      );
      expect(event).to.deep.equal({ type: "triggered", n: 1 });
      await collector.waitFor((e) => e === "not json", 2000, "the raw text body");
      expect(collector.subjects).to.deep.equal([
        "sh.keptn.event.dev.deployment.triggered",
        "sh.keptn.event.dev.deployment.started",
      ]);
      await collector.close();
    });

    it("collector.waitFor times out listing what it did receive", async () => {
      server = await NatsServerProcess.start();
      nc = await connect({ servers: server.url });
      const collector = await subscribeCollector(nc, "events");
      nc.publish("events", JSON.stringify({ type: "sh.keptn.event.deployment.started" }));
      const error = await rejectionOf(() => collector.waitFor(() => false, 100, "a finished event"));
      expect(error.message).to.match(/^timed out after 100ms waiting for a finished event/);
      expect(error.message).to.contain("received 1 event(s): sh.keptn.event.deployment.started");
      await collector.close();
    });

    it("restarts on the same port after a kill, and a client reconnects", async () => {
      server = await NatsServerProcess.start();
      const client = await connect({
        servers: server.url,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 20,
      });
      nc = client;
      const statuses: string[] = [];
      void (async () => {
        for await (const status of client.status()) statuses.push(status.type);
      })();
      const collector = await subscribeCollector(client, "ping");

      await server.kill("SIGKILL");
      expect(server.running).to.equal(false);
      await waitFor(() => statuses.includes("disconnect"), { timeoutMs: 2000, what: "the client to notice" });
      const port = server.port;
      await server.restart();
      expect(server.port).to.equal(port);
      await waitFor(() => statuses.includes("reconnect"), {
        timeoutMs: 3000,
        what: "the client to reconnect",
      });

      client.publish("ping", JSON.stringify({ after: "restart" }));
      await collector.waitFor(() => true, 2000, "a message after the restart");
      await collector.close();
    });

    it("runs JetStream with a store that survives a restart", async () => {
      server = await NatsServerProcess.start({ jetstream: true });
      nc = await connect({ servers: server.url });
      const jsm = await nc.jetstreamManager();
      const info = await jsm.getAccountInfo();
      expect(info.streams).to.equal(0);
      await jsm.streams.add({ name: "keptn", subjects: ["sh.keptn.>"] });
      await nc.close();

      await server.restart();
      nc = await connect({ servers: server.url });
      const after = await (await nc.jetstreamManager()).streams.info("keptn");
      expect(after.config.subjects).to.deep.equal(["sh.keptn.>"]);
    });

    it("fails with the server's output when it cannot start", async () => {
      const error = await rejectionOf(() =>
        NatsServerProcess.start({ jetstream: true, storeDir: "/dev/null/x" }),
      );
      expect(error.message).to.contain("nats-server did not start");
      expect(error.message).to.contain("--- its output ---");
    });
  });

  describe("gitops fixture", () => {
    let fixture: GitopsFixture;
    beforeEach(async () => (fixture = await createGitopsFixture()));
    afterEach(() => fixture.remove());

    it("holds the sockshop layout in one commit on main", async () => {
      expect(fixture.bareDir).to.equal(join(fixture.root, "repos", "gitops.git"));
      const log = await gitLog(fixture.bareDir);
      expect(log).to.have.length(1);
      expect(log[0]?.author).to.equal(`${fixtureAuthor.name} <${fixtureAuthor.email}>`);
      for (const [path, content] of Object.entries(defaultGitopsFiles)) {
        expect(await readFileAt(fixture.bareDir, "main", path)).to.equal(content);
      }
      const values = await readFileAt(fixture.bareDir, "main", "charts/carts/values-dev.yaml");
      expect(values).to.contain('tag: "0.13.1"   # bumped by Keptn');
      const prod = await readFileAt(fixture.bareDir, "main", "manifests/production/orders/deployment.yaml");
      expect(prod.split(/^---$/m)).to.have.length(2);
    });

    it("commitToBare adds a commit by another writer, visible in gitLog", async () => {
      const sha = await commitToBare(
        fixture.bareDir,
        { "charts/carts/values-dev.yaml": "replicaCount: 2\n" },
        "Scale carts\n\nby hand",
      );
      const log = await gitLog(fixture.bareDir);
      expect(log).to.have.length(2);
      expect(log[0]).to.deep.equal({
        sha,
        subject: "Scale carts",
        body: "by hand",
        author: `${otherWriter.name} <${otherWriter.email}>`,
      });
      expect(await readFileAt(fixture.bareDir, sha, "charts/carts/values-dev.yaml")).to.equal(
        "replicaCount: 2\n",
      );

      const branchSha = await commitToBare(fixture.bareDir, { "x.txt": "x\n" }, "On a branch", {
        branch: "hotfix",
      });
      expect((await gitLog(fixture.bareDir, "hotfix"))[0]?.sha).to.equal(branchSha);
      expect(await gitLog(fixture.bareDir)).to.have.length(2);
    });

    it("git() fails with a GitCommandError carrying stderr", async () => {
      const error = await rejectionOf(() => readFileAt(fixture.bareDir, "main", "missing.yaml"));
      expect(error).to.be.instanceOf(GitCommandError);
      expect(error.message).to.match(/cat-file blob main:missing\.yaml failed \(exit \d+\)/);
      expect((error as GitCommandError).stderr).to.not.equal("");
    });
  });

  describe("GitHttpServer", () => {
    const token = "s3cr3t-token";
    let fixture: GitopsFixture;
    let server: GitHttpServer;
    let work: string;

    beforeEach(async () => {
      fixture = await createGitopsFixture();
      server = await GitHttpServer.start({ projectRoot: join(fixture.root, "repos"), token });
      work = await mkdtemp(join(tmpdir(), "git-http-test-"));
    });
    afterEach(async () => {
      await server.stop();
      await fixture.remove();
      await rm(work, { recursive: true, force: true });
    });

    const withAuth = (header: string) => ["-c", `http.extraHeader=Authorization: ${header}`];
    const author = {
      GIT_AUTHOR_NAME: "t",
      GIT_AUTHOR_EMAIL: "t@x",
      GIT_COMMITTER_NAME: "t",
      GIT_COMMITTER_EMAIL: "t@x",
    };

    it("clones and pushes over smart HTTP with the right token", async () => {
      const clone = join(work, "clone");
      await git([
        ...withAuth(server.authorizationHeader()),
        "clone",
        "--quiet",
        server.repoUrl("gitops.git"),
        clone,
      ]);
      const values = await readFile(join(clone, "charts/orders/values-dev.yaml"), "utf8");
      expect(values).to.equal(defaultGitopsFiles["charts/orders/values-dev.yaml"]);

      await writeFile(
        join(clone, "charts/orders/values-dev.yaml"),
        values.replace("tag: 0.13.1", "tag: 0.13.2"),
      );
      await git(["commit", "--quiet", "-am", "Deploy orders 0.13.2 to dev"], { cwd: clone, env: author });
      await git([...withAuth(server.authorizationHeader()), "push", "--quiet", "origin", "main"], {
        cwd: clone,
      });

      expect((await gitLog(fixture.bareDir))[0]?.subject).to.equal("Deploy orders 0.13.2 to dev");
      expect(await readFileAt(fixture.bareDir, "main", "charts/orders/values-dev.yaml")).to.contain(
        "tag: 0.13.2",
      );
      expect(server.requests.some((r) => r.path.endsWith("/git-receive-pack") && r.status === 200)).to.equal(
        true,
      );
      expect(server.requests.every((r) => r.authorized)).to.equal(true);
      expect(server.hits).to.equal(server.requests.length);
    });

    it("passes chunked push bodies and gzip'd fetch bodies through to git http-backend", async () => {
      const clone = join(work, "clone");
      const auth = withAuth(server.authorizationHeader());
      await git([...auth, "clone", "--quiet", server.repoUrl("gitops.git"), clone]);

      // A pack larger than http.postBuffer (1 MiB) is sent with Transfer-Encoding: chunked, no Content-Length.
      await writeFile(join(clone, "big.bin"), randomBytes(1536 * 1024));
      await git(["add", "big.bin"], { cwd: clone });
      await git(["commit", "--quiet", "-m", "Big file"], { cwd: clone, env: author });
      await git([...auth, "push", "--quiet", "origin", "HEAD:main"], { cwd: clone });
      expect((await gitLog(fixture.bareDir))[0]?.subject).to.equal("Big file");

      // Enough local commits that the fetch negotiation body exceeds 1 KiB, which git then gzips. Dated after the
      // pushed commit, so the client sends them all as "have" lines before it finds the common one.
      const now = Math.floor(Date.now() / 1000);
      for (let i = 0; i < 40; i++) {
        const env = { ...author, GIT_COMMITTER_DATE: `${now + 60 + i} +0000` };
        await git(["commit", "--quiet", "--allow-empty", "-m", `local ${i}`], { cwd: clone, env });
      }
      const remoteSha = await commitToBare(fixture.bareDir, { "remote.txt": "remote\n" }, "Remote change");
      const trace = join(work, "fetch-trace.txt");
      await git([...auth, "fetch", "--quiet", "origin"], {
        cwd: clone,
        env: { GIT_TRACE_CURL: trace, GIT_TRACE_CURL_NO_DATA: "1" },
      });
      expect(await readFile(trace, "utf8")).to.contain("Send header: Content-Encoding: gzip");
      expect((await git(["rev-parse", "origin/main"], { cwd: clone })).trim()).to.equal(remoteSha);
    });

    it("accepts credentials in the clone URL", async () => {
      await git(["clone", "--quiet", server.authRepoUrl("gitops.git"), join(work, "clone")]);
      // git sends URL credentials only after a 401 challenge, as against a real host
      expect(server.requests.map((r) => r.status)).to.include.members([401, 200]);
      expect(server.requests.filter((r) => r.status === 200).every((r) => r.authorized)).to.equal(true);
    });

    it("refuses a wrong token with 401, and git reports an auth error", async () => {
      const error = await rejectionOf(() =>
        git([
          ...withAuth(basicAuth("x-access-token", "wrong")),
          "clone",
          server.repoUrl("gitops.git"),
          work + "/c",
        ]),
      );
      expect(error.message).to.match(/Authentication failed|could not read Username|401/);
      expect(error.message).to.not.contain(basicAuth("x-access-token", "wrong").slice(6));
      expect(server.requests[0]).to.include({ authorized: false, status: 401 });
    });

    it("refuses an anonymous push", async () => {
      const clone = join(work, "clone");
      await git(["clone", "--quiet", fixture.bareDir, clone]);
      await git(["commit", "--quiet", "--allow-empty", "-m", "sneaky"], { cwd: clone, env: author });
      const error = await rejectionOf(() =>
        git(["push", server.repoUrl("gitops.git"), "HEAD:main"], { cwd: clone }),
      );
      expect(error.message).to.match(/Authentication failed|could not read Username|401/);
      expect(server.requests.map((r) => r.status)).to.deep.equal([401]);
      expect(await gitLog(fixture.bareDir)).to.have.length(1);
    });

    it("checks the user name when one is configured", async () => {
      const strict = await GitHttpServer.start({
        projectRoot: join(fixture.root, "repos"),
        token,
        username: "keptn",
      });
      try {
        const wrongUser = basicAuth("x-access-token", token);
        await rejectionOf(() => git([...withAuth(wrongUser), "ls-remote", strict.repoUrl("gitops.git")]));
        const out = await git([
          ...withAuth(strict.authorizationHeader()),
          "ls-remote",
          strict.repoUrl("gitops.git"),
        ]);
        expect(out).to.match(/^[0-9a-f]{40}\tHEAD$/m);
        expect(strict.requests.map((r) => r.status)).to.deep.equal([401, 200, 200]); // protocol v2: ls-refs is a POST
      } finally {
        await strict.stop();
      }
    });

    it("serves anonymously when no token is set, and 404s an unknown repository", async () => {
      const open = await GitHttpServer.start({ projectRoot: join(fixture.root, "repos") });
      try {
        await git(["ls-remote", open.repoUrl("gitops.git")]);
        await rejectionOf(() => git(["ls-remote", open.repoUrl("nope.git")]));
        expect(open.requests.map((r) => `${r.method} ${r.path} ${r.status}`)).to.deep.equal([
          "GET /gitops.git/info/refs?service=git-upload-pack 200",
          "POST /gitops.git/git-upload-pack 200",
          "GET /nope.git/info/refs?service=git-upload-pack 404",
        ]);
      } finally {
        await open.stop();
      }
    });
  });
});
