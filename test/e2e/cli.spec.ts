import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NatsServerProcess } from "../support/nats-server.js";
import { waitFor } from "../support/wait.js";

const CONFIG = `
http: { host: 127.0.0.1, port: 0 }
repositories:
  - name: gitops
    url: file:///nowhere/gitops.git
argocd:
  servers:
    - name: main
      url: http://127.0.0.1:9
      token: { fromEnv: CLI_TEST_ARGO_TOKEN }
targets:
  - repository: gitops
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: main }
`;

interface Run {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
}

function keptnGitops(args: string[], env: Record<string, string>): Run {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts", ...args], {
    env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "/tmp", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const run: Run = {
    child,
    stdout: [],
    stderr: [],
    exited: new Promise((resolve) => child.once("exit", (code) => resolve(code))),
  };
  child.stdout!.on("data", (chunk: Buffer) =>
    run.stdout.push(...chunk.toString().split("\n").filter(Boolean)),
  );
  child.stderr!.on("data", (chunk: Buffer) => run.stderr.push(chunk.toString()));
  return run;
}

describe("the keptn-gitops command", function () {
  this.timeout(60_000);
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "keptn-gitops-cli-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("refuses a broken configuration, listing every problem with its path", async () => {
    const file = join(dir, "broken.yaml");
    await writeFile(
      file,
      CONFIG.replace("tool: argocd, server: main", "tool: argocd, server: other").replace(
        "port: 0",
        "port: -1",
      ),
    );
    const run = keptnGitops(["serve", "--config", file], {});
    expect(await run.exited).to.equal(1);
    expect(run.stderr.join("")).to.include(`invalid configuration in ${file}:`).and.include("  - http.port:");
  });

  it("serves /readyz, reports a NATS outage as not ready, and stops on SIGTERM", async () => {
    const nats = await NatsServerProcess.start();
    const file = join(dir, "config.yaml");
    await writeFile(file, CONFIG);
    const run = keptnGitops(["serve", "--config", file], {
      NATS_URL: nats.url,
      CLI_TEST_ARGO_TOKEN: "cli-token-123456",
    });
    try {
      const started = await waitFor(
        () => run.stdout.find((l) => l.includes('"msg":"keptn-gitops-service started"')),
        {
          timeoutMs: 20_000,
          what: "the service to start",
        },
      );
      const url = (JSON.parse(started) as { http: string }).http;
      const readiness = async () => (await fetch(`${url}/readyz`)).status;
      expect(await readiness()).to.equal(200);

      await nats.kill("SIGKILL");
      await waitFor(async () => (await readiness()) === 503, {
        timeoutMs: 10_000,
        what: "/readyz to say not ready",
      });
      await nats.restart();
      await waitFor(async () => (await readiness()) === 200, {
        timeoutMs: 15_000,
        what: "/readyz to say ready again",
      });

      run.child.kill("SIGTERM");
      expect(await run.exited).to.equal(0);
      expect(run.stdout.some((l) => l.includes('"msg":"keptn-gitops-service stopped"'))).to.equal(true);
      expect(run.stdout.join("\n")).not.to.include("cli-token-123456");
    } finally {
      run.child.kill("SIGKILL");
      await nats.stop();
    }
  });
});
