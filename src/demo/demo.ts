import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { randomUUID } from "node:crypto";
import { connect } from "nats";
import { ArgoCdSimulator } from "../../test/simulators/argocd/argocd-simulator.js";
import { GitHttpServer } from "../../test/support/git-http-server.js";
import { createGitopsFixture, git } from "../../test/support/gitops-fixture.js";
import { NatsServerProcess } from "../../test/support/nats-server.js";
import { buildApp } from "../app.js";
import { loadConfig } from "../config/load-config.js";
import { createLogger } from "../shared/logger.js";
import { SecretRegistry } from "../shared/secrets.js";

const GIT_TOKEN = "demo-git-token-5f1c";
const ARGO_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZW1vIn0.ZGVtby1hcmdvY2QtOWIyZQ";

/** The service's configuration for the demo: one repository, one Argo CD, one target for project sockshop. */
function demoConfig(repoUrl: string, argoUrl: string, cacheDir: string): string {
  return `
integration: { name: gitops-service }
http: { host: 127.0.0.1, port: 0 }
log: { level: warn }
git: { cacheDir: ${cacheDir} }
repositories:
  - name: gitops
    url: ${repoUrl}
    auth: { token: { fromEnv: DEMO_GIT_TOKEN } }
argocd:
  servers:
    - name: demo
      url: ${argoUrl}
      token: { fromEnv: DEMO_ARGO_TOKEN }
      pollInterval: 200ms
targets:
  - match: { project: sockshop }
    repository: gitops
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: demo, application: "{service}-{stage}" }
    timeout: 1m
`;
}

interface Step {
  image: string;
  expect: "pass" | "fail";
  note: string;
}

const STEPS: Step[] = [
  { image: "docker.io/keptnexamples/carts:0.13.3", expect: "pass", note: "a good release" },
  {
    image: "docker.io/keptnexamples/carts:0.13.4-crashloop",
    expect: "fail",
    note: "a release whose pods crash",
  },
];

/**
 * `keptn-gitops demo`: the whole loop on one machine with embedded defaults. It starts a nats-server, a GitOps
 * repository behind git's smart HTTP, the Argo CD simulator and the service, then plays Keptn: it publishes
 * deployment.triggered and prints every event and commit as they happen.
 */
export async function runDemo(): Promise<number> {
  const start = performance.now();
  const stamp = () => `[+${((performance.now() - start) / 1000).toFixed(2)}s]`.padEnd(10);
  const say = (line: string) => console.log(`${stamp()} ${line}`);
  const cleanups: Array<() => Promise<unknown>> = [];
  let failures = 0;
  try {
    const nats = await NatsServerProcess.start();
    cleanups.unshift(() => nats.stop());
    const fixture = await createGitopsFixture();
    cleanups.unshift(() => fixture.remove());
    const gitServer = await GitHttpServer.start({
      projectRoot: join(fixture.root, "repos"),
      token: GIT_TOKEN,
    });
    cleanups.unshift(() => gitServer.stop());
    const repoUrl = gitServer.repoUrl("gitops.git");
    const argo = new ArgoCdSimulator({
      token: ARGO_TOKEN,
      apps: [
        {
          name: "carts-dev",
          repoURL: repoUrl,
          gitDir: fixture.bareDir,
          path: "charts/carts",
          automated: true,
        },
      ],
      pollIntervalMs: 3_000,
      syncDurationMs: 400,
      healthDelayMs: 800,
    });
    await argo.start();
    cleanups.unshift(() => argo.stop());
    const cacheDir = await mkdtemp(join(tmpdir(), "keptn-gitops-demo-"));
    cleanups.unshift(() => rm(cacheDir, { recursive: true, force: true }));

    const secrets = new SecretRegistry();
    const config = loadConfig({
      text: demoConfig(repoUrl, argo.url, cacheDir),
      source: "embedded demo configuration",
      env: { NATS_URL: nats.url, DEMO_GIT_TOKEN: GIT_TOKEN, DEMO_ARGO_TOKEN: ARGO_TOKEN },
    });
    const serviceLog: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        serviceLog.push(chunk.toString("utf8"));
        done();
      },
    });
    const app = buildApp({ config, logger: createLogger({ level: "warn", secrets, destination }), secrets });
    const { httpUrl } = await app.start();
    cleanups.unshift(() => app.stop());

    console.log(
      "keptn-gitops demo: Keptn -> NATS -> this service -> git -> Argo CD -> Keptn, all on this machine\n",
    );
    console.log(`  nats-server        ${nats.url}`);
    console.log(`  GitOps repository  ${repoUrl} (bare repo ${fixture.bareDir}, token required)`);
    console.log(`  Argo CD simulator  ${argo.url} (application carts-dev, auto-sync, path charts/carts)`);
    console.log(
      `  the service        ${httpUrl}/readyz (integration gitops-service, NATS queue group gitops-service)\n`,
    );

    const keptn = await connect({ servers: nats.url, name: "keptn (demo)" });
    cleanups.unshift(() => keptn.close());
    const decoder = new TextDecoder();
    const finished = new Map<string, (event: Record<string, any>) => void>(); // eslint-disable-line @typescript-eslint/no-explicit-any
    keptn.subscribe("sh.keptn.event.deployment.*", {
      callback: (_error, message) => {
        const event = JSON.parse(decoder.decode(message.data)) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
        const data = event["data"] ?? {};
        if (message.subject.endsWith(".started")) say(`service -> ${message.subject}  status=${data.status}`);
        if (message.subject.endsWith(".finished")) {
          say(`service -> ${message.subject}  status=${data.status} result=${data.result}`);
          console.log(`${" ".repeat(11)}message:   ${data.message}`);
          console.log(`${" ".repeat(11)}gitCommit: ${data.deployment?.gitCommit}`);
          finished.get(event["triggeredid"])?.(event);
        }
      },
    });
    argo.on("settled", (e) =>
      say(`Argo CD  ${e.app} finished syncing ${e.revision.slice(0, 7)}: ${e.phase}, health ${e.health}`),
    );
    let lastHead = (await git(["--git-dir", fixture.bareDir, "rev-parse", "main"])).trim();
    const watchGit = setInterval(() => {
      void git(["--git-dir", fixture.bareDir, "log", "-1", "--format=%H%x09%an%x09%s", "main"]).then(
        (line) => {
          const [sha = "", author, subject] = line.trim().split("\t");
          if (sha === lastHead) return;
          lastHead = sha;
          say(`git      new commit ${sha.slice(0, 7)} on main by ${author}: "${subject}"`);
        },
      );
    }, 50);
    cleanups.unshift(async () => clearInterval(watchGit));

    for (const step of STEPS) {
      console.log(`\n--- deploy ${step.image} (${step.note}) ---`);
      const id = randomUUID();
      const answered = new Promise<Record<string, any>>((resolve) => finished.set(id, resolve)); // eslint-disable-line @typescript-eslint/no-explicit-any
      const triggered = {
        specversion: "1.0",
        id,
        type: "sh.keptn.event.deployment.triggered",
        source: "shipyard-controller",
        datacontenttype: "application/json",
        time: new Date().toISOString(),
        shkeptncontext: randomUUID(),
        shkeptnspecversion: "0.2.4",
        data: {
          project: "sockshop",
          stage: "dev",
          service: "carts",
          labels: { buildId: "demo" },
          configurationChange: { values: { image: step.image } },
          deployment: {
            deploymentURIsLocal: ["http://carts.sockshop-dev:8080"],
            deploymentstrategy: "direct",
          },
        },
      };
      keptn.publish(triggered.type, JSON.stringify(triggered));
      say(`keptn   -> ${triggered.type}  sockshop/dev/carts image=${step.image}`);
      const event = await answered;
      const result = event["data"]?.result;
      if (result !== step.expect) {
        failures++;
        console.log(`demo: expected result ${step.expect}, got ${result}`);
      }
    }
    const diff = await git([
      "--git-dir",
      fixture.bareDir,
      "log",
      "-2",
      "-p",
      "--format=%n%h %s%n%n%b",
      "main",
      "--",
      "charts/carts/values-dev.yaml",
    ]);
    console.log(`\n--- what the service committed (git log -p) ---${diff}`);
    if (serviceLog.length > 0) console.log(`--- service warnings and errors ---\n${serviceLog.join("")}`);
    console.log(
      failures === 0
        ? "demo: done, both deployments ended as expected"
        : `demo: ${failures} deployment(s) ended unexpectedly`,
    );
  } catch (error) {
    console.error("demo failed:", error);
    failures++;
  } finally {
    for (const cleanup of cleanups) await cleanup().catch(() => undefined);
  }
  return failures === 0 ? 0 : 1;
}
