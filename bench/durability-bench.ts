// The durability benchmark, second part of `npm run bench`: the memory of one service process idle and with many
// deployments in flight, and the time to carry on in-flight deployments after a SIGKILL. What it measures and why
// is in docs/benchmarks.md ("Durability"). The service runs as a child process (its RSS is its own) on a
// JetStream-enabled nats-server with Keptn's `keptn` stream; the tasks are in the key-value bucket.
import { readFile } from "node:fs/promises";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { execFile } from "node:child_process";
import { parseArgs, promisify } from "node:util";
import { DeploymentWorld } from "../test/e2e/world.js";
import { simulatorBackend } from "../test/e2e/argocd-backend.js";
import { ServiceProcess } from "../test/support/service-process.js";
import { waitFor } from "../test/support/wait.js";
import { machine } from "./bench-support.js";

const { values } = parseArgs({
  options: {
    "in-flight": { type: "string", default: "10000" },
    resume: { type: "string", default: "1000" },
  },
});
const IN_FLIGHT = Number(values["in-flight"]);
const RESUME = Number(values.resume);
const LONG_WAIT_MS = 600_000;
const run = promisify(execFile);

/** Resident memory of a process from /proc, in MiB. */
async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kib = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]);
  return kib / 1024;
}

const count = (service: ServiceProcess, msg: string, from = 0) =>
  service.lines.slice(from).filter((line) => line.includes(`"msg":"${msg}"`)).length;

const WORLD_OPTIONS = {
  jetstream: true,
  inProcess: false,
  logLevel: "info",
  backend: simulatorBackend({ pollIntervalMs: 60_000 }),
} as const;
/** The heap docs/configuration.md ("Memory") gives for 10,000 queued at the repository: 2 x 9 KiB each, rounded up. */
const HEAP_MIB = 192;
/** The heap it gives for 10,000 waiting for their GitOps tool: 2 x 13 KiB each, rounded up. */
const HEAP_WAITING_MIB = 256;
/** How long the RSS is sampled after the last deployment started: node collects the burst's garbage meanwhile. */
const SETTLE_S = 40;

interface InFlightMemory {
  allStartedMs: number;
  atStart: number;
  highest: number;
  settled: number;
  /** Set when the service exited on its own: its last line of output (node's "heap out of memory"). */
  died?: string;
}

/**
 * Where the deployments in flight wait. `repository`: accepted, recorded, started, and queued at the repository,
 * whose first git request is held (nothing is committed). `argocd`: committed and pushed (a burst: up to 50 in a
 * commit), and waiting for Argo CD, which may not sync the application (a deny window), so every one waits.
 * All deployments are of one service, so in `argocd` all wait for one application and every change of it wakes
 * all of them: the worst case of the waiting state.
 */
type WaitingAt = "repository" | "argocd";

/**
 * RSS of a new service process, in a new world, with IN_FLIGHT deployments in flight: when the last one reached
 * the waiting state, and sampled every second for SETTLE_S seconds after. Kills the service.
 */
async function inFlightMemory(dir: string, at: WaitingAt, nodeOptions?: string): Promise<InFlightMemory> {
  const world = await DeploymentWorld.start(WORLD_OPTIONS);
  try {
    const service = await ServiceProcess.start(
      dir,
      world.serviceSetup(),
      nodeOptions ? { NODE_OPTIONS: nodeOptions } : {},
      ["dist/src/main.js"],
    );
    if (at === "argocd") world.simulator!.denySyncs("carts-dev", true);
    const { release } = at === "repository" ? world.gitServer.hold("request") : { release: () => undefined };
    const reached = at === "repository" ? "task started" : "waiting for the GitOps tool";
    const triggerAt = performance.now();
    for (let i = 0; i < IN_FLIGHT; i++) {
      world.trigger({ stage: "dev", image: `docker.io/keptnexamples/carts:8.${i}.0` });
    }
    const died = (): InFlightMemory => ({
      allStartedMs: performance.now() - triggerAt,
      atStart: NaN,
      highest: NaN,
      settled: NaN,
      died: service.lines.find((line) => /out of memory/i.test(line)) ?? service.lines.at(-1) ?? "no output",
    });
    await waitFor(() => !service.running || count(service, reached) >= IN_FLIGHT, {
      timeoutMs: LONG_WAIT_MS,
      what: `${IN_FLIGHT} deployments to log "${reached}"`,
      intervalMs: 200,
    });
    if (!service.running) return died();
    const allStartedMs = performance.now() - triggerAt;
    const atStart = await rssMiB(service.pid!);
    let highest = atStart;
    let settled = atStart;
    for (let second = 0; second < SETTLE_S; second++) {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      if (!service.running) return { ...died(), atStart };
      settled = await rssMiB(service.pid!);
      highest = Math.max(highest, settled);
    }
    await service.kill();
    release();
    return { allStartedMs, atStart, highest, settled };
  } finally {
    await world.stop();
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "durability-bench-"));
  const world = await DeploymentWorld.start(WORLD_OPTIONS);
  const lines: string[] = [];
  try {
    lines.push(...(await machine()));
    lines.push(
      `run        the service as a child process (npm run build, then node dist/src/main.js serve), JetStream intake and key-value task store, log level info`,
    );

    // Idle, and the baseline of the resume figure: a start with nothing to carry on.
    // The service as it ships: the TypeScript build run by node, not the sources through tsx (whose compiler
    // would count in the memory).
    await run("npx", ["tsc", "-p", "tsconfig.build.json"]);
    const startedAt = performance.now();
    const service = await ServiceProcess.start(dir, world.serviceSetup(), {}, ["dist/src/main.js"]);
    const coldStartMs = performance.now() - startedAt;
    const idle = await rssMiB(service.pid!);

    // Resume: RESUME deployments in flight, SIGKILL, restart, until every one is carried on and then answered.
    // Every deployment triggered while the service's first git request is held is accepted, recorded and started,
    // then waits for the repository: an in-flight state that costs no git.
    const { release } = world.gitServer.hold("request");
    const resumeIds = Array.from(
      { length: RESUME },
      (_, i) => world.trigger({ stage: "dev", image: `docker.io/keptnexamples/carts:7.${i}.0` }).id,
    );
    await waitFor(() => count(service, "task started") >= RESUME, {
      timeoutMs: LONG_WAIT_MS,
      what: "the deployments to start",
    });
    await service.kill();
    release();
    const from = service.lines.length;
    const restartAt = performance.now();
    await service.restart();
    const restartedMs = performance.now() - restartAt;
    await waitFor(() => count(service, "carrying on a recorded task", from) >= RESUME, {
      timeoutMs: LONG_WAIT_MS,
      what: "every deployment to be carried on",
      intervalMs: 50,
    });
    const carriedOnMs = performance.now() - restartAt;
    for (const id of resumeIds) await world.answersFor(id, LONG_WAIT_MS);
    const answeredMs = performance.now() - restartAt;
    const failed = resumeIds.filter((id) => world.answersSoFar(id).at(-1)?.data.result !== "pass").length;

    // Memory with IN_FLIGHT deployments in flight, in each waiting state: with node's default heap sizing, and
    // with the heap size docs/configuration.md ("Memory") gives for them. Each in a new world and process.
    await service.kill();
    const heap = `--max-old-space-size=${HEAP_MIB}`;
    const queued = await inFlightMemory(dir, "repository");
    const queuedCapped = await inFlightMemory(dir, "repository", heap);
    const waiting = await inFlightMemory(dir, "argocd");
    const waitingCapped = await inFlightMemory(dir, "argocd", `--max-old-space-size=${HEAP_WAITING_MIB}`);
    const row = (label: string, m: InFlightMemory) =>
      m.died
        ? [
            `      ${label}`,
            `        the service exited ${(m.allStartedMs / 1000).toFixed(1)} s after the first trigger${Number.isNaN(m.atStart) ? "" : `, ${m.atStart.toFixed(1)} MiB when all were there`}: ${m.died.slice(0, 120)}`,
          ]
        : [
            `      ${label}`,
            `        when all ${IN_FLIGHT} were there (${(m.allStartedMs / 1000).toFixed(1).padStart(5)} s after the first trigger)   ${m.atStart.toFixed(1).padStart(8)} MiB`,
            `        highest in the ${SETTLE_S} s after that                             ${m.highest.toFixed(1).padStart(8)} MiB`,
            `        at the end of those ${SETTLE_S} s                                   ${m.settled.toFixed(1).padStart(8)} MiB   (goal: under 250 MB = 238.4 MiB)`,
          ];
    lines.push(
      "",
      "durability: one service process, resident memory (VmRSS from /proc) and resuming after SIGKILL",
      `(i) RSS idle, after start                                            ${idle.toFixed(1).padStart(8)} MiB`,
      `    RSS with ${IN_FLIGHT} deployments of one service in flight, triggered at once, each in a new process:`,
      `    (a) recorded, started, queued at the repository (git held)`,
      ...row("node's default heap sizing", queued),
      ...row(`NODE_OPTIONS=${heap}`, queuedCapped),
      `    (b) committed, pushed, waiting for Argo CD to sync the one application (syncs denied)`,
      ...row("node's default heap sizing", waiting),
      ...row(`NODE_OPTIONS=--max-old-space-size=${HEAP_WAITING_MIB}`, waitingCapped),
      `(j) resume ${RESUME} in-flight deployments after SIGKILL: process start to "started"   ${(restartedMs / 1000).toFixed(2).padStart(7)} s`,
      `    to every one carried on (claimed from the bucket, running again)  ${(carriedOnMs / 1000).toFixed(2).padStart(7)} s   baseline: a start with nothing to carry on ${(coldStartMs / 1000).toFixed(2)} s, x${(carriedOnMs / coldStartMs).toFixed(2)}`,
      `    to every one answered (git, Argo CD simulator, finished)            ${(answeredMs / 1000).toFixed(2).padStart(7)} s   (${failed} not pass)`,
    );
  } finally {
    await world.stop();
    await rm(dir, { recursive: true, force: true });
  }
  console.log(lines.join("\n"));
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
