// The deployment benchmark: `npm run bench` (-- --deployments N). What it measures and why is in
// docs/benchmarks.md. It plays Keptn against the same world as the e2e tests (real nats-server, real git behind
// `git http-backend`, the Argo CD simulator, the service in this process) and prints each figure next to a
// baseline measured in the same run.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { connect } from "nats";
import { DeploymentWorld, GIT_TOKEN, type KeptnEvent } from "../test/e2e/world.js";
import type { SettledEvent } from "../test/simulators/argocd/argocd-simulator.js";
import { basicAuth, type GitHttpRequestRecord } from "../test/support/git-http-server.js";
import { git } from "../test/support/gitops-fixture.js";
import { Arrivals, LABEL, machine, ratio, row, stamp, summarize } from "./bench-support.js";
import { gitBurst, gitBurstLines, type GitBurstResult } from "./burst-bench.js";
import {
  FLUX_POLL_INTERVAL_MS,
  fluxBurst,
  fluxSignalSamples,
  type FluxBurstResult,
  type FluxSignal,
} from "./flux-bench.js";

/** Simulator timings: short, so that the run stays short; Argo CD itself polls git every 3 minutes. */
const ARGO = { pollIntervalMs: 100, syncDurationMs: 50, healthDelayMs: 50 } as const;
/** The service's `argocd.servers[].pollInterval` for the polling run (its default is 2 s). */
const SERVICE_POLL_INTERVAL_MS = 100;
/** The pollInterval of the watch run: so long that only the watch stream can finish a deployment in time. */
const WATCH_RUN_POLL_INTERVAL_MS = 60_000;
/** The pollInterval of the bursts: the service's default. */
const BURST_POLL_INTERVAL_MS = 2_000;
/** The service's default log level. */
const LOG_LEVEL = "info";
const APPLICATION = "carts-dev";
const VALUES_FILE = "charts/carts/values-dev.yaml";
const SERVICE_REPO = "gitops.git";
const BASELINE_REPO = "baseline.git";
const ECHO_REQUEST = "bench.echo.request";
const ECHO_REPLY = "bench.echo.reply";
const DEFAULT_DEPLOYMENTS = 40;
const MIN_DEPLOYMENTS = 20;
const DEFAULT_BURST = 500;
/** (h): deployments of as many services into one repository and branch, triggered at once. */
const GIT_BURST = 200;
const MIN_BURST = 10;

const image = (n: number) => `docker.io/keptnexamples/carts:1.0.${n}`;

// ---- git, as the git server saw it ------------------------------------------------------------------------

interface GitTimes {
  /** start -> the first request of this commit reached the git server */
  toFirstRequest: number;
  /** -> `GET info/refs?service=git-receive-pack` (the push begins): fetch and local work */
  fetchAndLocal: number;
  /** -> the git server has answered the `POST git-receive-pack` */
  push: number;
  /** start -> the git server has answered the `POST git-receive-pack` */
  total: number;
}

/** Reads what `repo` saw since `start` from the git server's request records: exactly one push, answered 200. */
function gitTimes(records: GitHttpRequestRecord[], repo: string, start: number, what: string): GitTimes {
  const ours = records.filter((r) => r.path.startsWith(`/${repo}/`));
  const pushes = ours.filter((r) => r.method === "POST" && r.path === `/${repo}/git-receive-pack`);
  const advert = ours.find((r) => r.path === `/${repo}/info/refs?service=git-receive-pack`);
  const [first] = ours;
  const [push] = pushes;
  if (first === undefined || advert === undefined || push?.finishedAt === undefined || pushes.length !== 1) {
    throw new Error(`${what}: expected one answered push to ${repo}, saw ${ours.length} request(s)`);
  }
  if (push.status !== 200) throw new Error(`${what}: the push to ${repo} was answered ${push.status}`);
  return {
    toFirstRequest: first.receivedAt - start,
    fetchAndLocal: advert.receivedAt - first.receivedAt,
    push: push.finishedAt - advert.receivedAt,
    total: push.finishedAt - start,
  };
}

/**
 * The baseline of (b): a warm clone of a copy of the GitOps repository, served by the same git server with the
 * same token, updated with plain git commands: fetch, reset to the fetched branch, edit the values file, commit,
 * push. Credentials go through the environment, as the service passes them.
 */
class PlainGitClone {
  private constructor(
    private readonly dir: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  static async create(url: string, authorization: string, dir: string): Promise<PlainGitClone> {
    const config: Array<[string, string]> = [
      ["user.name", "Plain Git Baseline"],
      ["user.email", "baseline@example.com"],
      [`http.${url}.extraHeader`, `Authorization: ${authorization}`],
    ];
    const env: NodeJS.ProcessEnv = { GIT_CONFIG_COUNT: String(config.length) };
    config.forEach(([key, value], i) => {
      env[`GIT_CONFIG_KEY_${i}`] = key;
      env[`GIT_CONFIG_VALUE_${i}`] = value;
    });
    await git(["clone", "--quiet", "--no-tags", "--single-branch", "--branch", "main", url, dir], { env });
    return new PlainGitClone(dir, env);
  }

  async commit(reference: string): Promise<void> {
    const run = (args: string[]) => git(args, { cwd: this.dir, env: this.env });
    await run(["fetch", "--quiet", "origin", "main"]);
    await run(["reset", "--quiet", "--hard", "origin/main"]);
    const file = join(this.dir, VALUES_FILE);
    const tag = reference.slice(reference.lastIndexOf(":") + 1);
    const text = await readFile(file, "utf8");
    const edited = text.replace(/^(\s*tag:\s*)"[^"]*"/m, `$1"${tag}"`);
    if (edited === text) throw new Error(`the baseline found no tag to change in ${VALUES_FILE}`);
    await writeFile(file, edited);
    await run(["commit", "--quiet", "--all", "-m", `Deploy carts ${reference} to sockshop/dev`]);
    await run(["push", "--quiet", "origin", "HEAD:refs/heads/main"]);
  }
}

// ---- one sample of each -----------------------------------------------------------------------------------

interface DeploymentSample {
  started: number;
  git: GitTimes;
  settledToFinished: number;
  total: number;
}

interface Bench {
  world: DeploymentWorld;
  answers: Arrivals<KeptnEvent>;
  echoes: Arrivals<Uint8Array>;
  settled: Arrivals<SettledEvent>;
  baseline: PlainGitClone;
  /** Size in bytes of the triggered events the bench published; the echo payload has the same size. */
  triggeredBytes: number;
}

async function deploy(bench: Bench, n: number): Promise<DeploymentSample> {
  const { world, answers, settled } = bench;
  const what = `deployment ${n}`;
  const firstRecord = world.gitServer.requests.length;
  const { id } = world.trigger({ image: image(n) });
  const start = performance.now();
  const started = await answers.wait(`${id} started`, `deployment.started of ${what}`);
  const finished = await answers.wait(`${id} finished`, `deployment.finished of ${what}`);
  const data = finished.value.data;
  const commit = data.deployment?.gitCommit;
  if (data.status !== "succeeded" || data.result !== "pass" || !data.message?.startsWith("Committed")) {
    throw new Error(`${what} did not pass with a new commit: ${data.status}/${data.result}: ${data.message}`);
  }
  if (commit === undefined) throw new Error(`${what}: deployment.finished has no gitCommit`);
  const settle = await settled.wait(`${APPLICATION}@${commit}`, `Argo CD settling ${what}`);
  if (settle.value.phase !== "Succeeded" || settle.value.health !== "Healthy") {
    throw new Error(`${what}: Argo CD settled ${settle.value.phase}/${settle.value.health}`);
  }
  return {
    started: started.at - start,
    git: gitTimes(world.gitServer.requests.slice(firstRecord), SERVICE_REPO, start, what),
    settledToFinished: finished.at - settle.at,
    total: finished.at - start,
  };
}

async function natsRoundTrip(bench: Bench, n: number): Promise<number> {
  const payload = new TextEncoder().encode(`${n}:`.padEnd(bench.triggeredBytes, "x"));
  bench.world.keptn.publish(ECHO_REQUEST, payload);
  const start = performance.now();
  const echo = await bench.echoes.wait(String(n), `echo ${n}`);
  return echo.at - start;
}

async function plainGit(bench: Bench, n: number): Promise<GitTimes> {
  const firstRecord = bench.world.gitServer.requests.length;
  const start = performance.now();
  await bench.baseline.commit(image(n));
  const records = bench.world.gitServer.requests.slice(firstRecord);
  return gitTimes(records, BASELINE_REPO, start, `baseline commit ${n}`);
}

// ---- the run ----------------------------------------------------------------------------------------------

interface Results {
  deployments: DeploymentSample[];
  roundTrips: number[];
  plainGit: GitTimes[];
  /** Size of the triggered events, and so of the echo payload. */
  triggeredBytes: number;
}

/** How the service learns that Argo CD has settled: its own reads, the watch stream, or a notification. */
type ArgoSignal = "poll" | "watch" | "webhook";
const ARGOCD_WEBHOOK_TOKEN = "bench-argocd-webhook-token-7d9f1b3e";

async function run(
  world: DeploymentWorld,
  count: number,
  interrupted: AbortSignal,
  signal: ArgoSignal,
): Promise<Results> {
  const answers = new Arrivals<KeptnEvent>();
  const echoes = new Arrivals<Uint8Array>();
  const settled = new Arrivals<SettledEvent>();
  let triggeredBytes = 0;
  const decoder = new TextDecoder();
  const notifications: Array<Promise<unknown>> = [];
  const onSettled = (event: SettledEvent) => {
    settled.add(`${event.app}@${event.revision}`, event.at, event);
    // As argocd-notifications does on on-sync-succeeded / on-deployed, with the template of docs/notifications.md.
    if (signal !== "webhook") return;
    notifications.push(
      fetch(`${world.httpUrl}/webhooks/argocd`, {
        method: "POST",
        body: JSON.stringify({ app: event.app, revision: event.revision }),
        headers: { authorization: `Bearer ${ARGOCD_WEBHOOK_TOKEN}` },
      }).then((answer) => {
        if (answer.status !== 202) throw new Error(`the service answered ${answer.status} to a notification`);
      }),
    );
  };
  const simulator = world.simulator;
  if (!simulator) throw new Error("the bench needs the Argo CD simulator as the backend");
  simulator.on("settled", onSettled);
  const subscriptions = [
    stamp(world.keptn, "sh.keptn.event.deployment.*", (at, subject, data) => {
      if (subject === "sh.keptn.event.deployment.triggered") {
        triggeredBytes = data.length;
        return;
      }
      const event = JSON.parse(decoder.decode(data)) as KeptnEvent;
      if (event.triggeredid) answers.add(`${event.triggeredid} ${subject.split(".").pop()}`, at, event);
    }),
    stamp(world.keptn, ECHO_REPLY, (at, _subject, data) => {
      echoes.add(decoder.decode(data.subarray(0, data.indexOf(":".charCodeAt(0)))), at, data);
    }),
  ];
  const echo = await connect({ servers: world.nats.url, name: "bench-echo" });
  try {
    echo.subscribe(ECHO_REQUEST, {
      callback: (error, msg) => {
        if (!error) echo.publish(ECHO_REPLY, msg.data);
      },
    });
    await echo.flush();
    await world.keptn.flush();

    await git([
      "clone",
      "--quiet",
      "--bare",
      world.fixture.bareDir,
      join(world.fixture.root, "repos", BASELINE_REPO),
    ]);
    const baseline = await PlainGitClone.create(
      world.gitServer.repoUrl(BASELINE_REPO),
      basicAuth(world.gitServer.username, GIT_TOKEN),
      join(world.fixture.root, "baseline-clone"),
    );
    const bench: Bench = { world, answers, echoes, settled, baseline, triggeredBytes };

    // Warm-up, not counted: the service clones into its cache on its first deployment; the first run of
    // anything pays for loading code. The warm-up deployment also gives the size of a triggered event.
    await deploy(bench, 0);
    if (triggeredBytes === 0) throw new Error("the bench did not see its own triggered event on NATS");
    bench.triggeredBytes = triggeredBytes;
    await natsRoundTrip(bench, 0);
    await plainGit(bench, 0);

    const results: Results = { deployments: [], roundTrips: [], plainGit: [], triggeredBytes };
    for (let n = 1; n <= count; n++) {
      if (interrupted.aborted) throw new Error("interrupted");
      results.roundTrips.push(await natsRoundTrip(bench, n));
      results.plainGit.push(await plainGit(bench, n));
      results.deployments.push(await deploy(bench, n));
    }
    await Promise.all(notifications);
    return results;
  } finally {
    for (const subscription of subscriptions) subscription.unsubscribe();
    simulator.off("settled", onSettled);
    await echo.close();
  }
}

/** (e): `count` deployments triggered at once; how many Argo CD API requests the service made for them. */
interface BurstResult {
  /** The watch stream on (true) or the shared poll schedule alone (false). */
  watch?: boolean;
  count: number;
  seconds: number;
  requests: number;
  byKind: Record<string, number>;
  streams: number;
}

async function burst(world: DeploymentWorld, count: number): Promise<BurstResult> {
  // Warm-up, not counted: the cache clone and the first stream connection.
  const warm = world.trigger({ image: "docker.io/keptnexamples/carts:2.0.0" });
  await world.answersFor(warm.id, 60_000);
  const before = world.argo.requests.length;
  const began = performance.now();
  const ids = Array.from(
    { length: count },
    (_, i) => world.trigger({ image: `docker.io/keptnexamples/carts:2.1.${i + 1}` }).id,
  );
  for (const id of ids) {
    const { finished } = await world.answersFor(id, 600_000);
    if (finished.data.result !== "pass") throw new Error(`burst deployment ${id}: ${finished.data.message}`);
  }
  const seconds = (performance.now() - began) / 1000;
  const calls = world.argo.requests.slice(before);
  const byKind: Record<string, number> = {};
  for (const call of calls) {
    const kind =
      call.path === "/api/v1/stream/applications"
        ? "stream connect"
        : call.path === "/api/v1/applications"
          ? "GET list"
          : `${call.method} ${call.path.endsWith("/sync") ? "sync" : call.query["refresh"] ? "refresh" : "read"}`;
    byKind[kind] = (byKind[kind] ?? 0) + 1;
  }
  return { count, seconds, requests: calls.length, byKind, streams: byKind["stream connect"] ?? 0 };
}

// ---- output -----------------------------------------------------------------------------------------------

/** The naive cost the bursts compare against: one read per deployment per poll, in flight half the burst. */
function naiveLine(count: number, seconds: number): string {
  const perDeployment = (count * seconds) / (BURST_POLL_INTERVAL_MS / 1000) / 2 / count;
  return (
    `    computed naive cost: one read per deployment per ${BURST_POLL_INTERVAL_MS / 1000} s poll while in flight ` +
    `would be about ${perDeployment.toFixed(1)} per deployment (each in flight for half the run on average)`
  );
}

const byKind = (counts: Record<string, number>) =>
  Object.entries(counts)
    .map(([kind, n]) => `${n} ${kind}`)
    .join(", ");

function report(
  argo: Record<ArgoSignal, Results>,
  bursts: BurstResult[],
  gitBurstResult: GitBurstResult,
  flux: Record<FluxSignal, number[]>,
  fluxBursts: FluxBurstResult[],
  header: string[],
  seconds: number,
): string {
  const { deployments, roundTrips, plainGit, triggeredBytes } = argo.poll;
  const service = deployments.map((d) => d.git);
  const git = (times: GitTimes[], key: keyof GitTimes) => times.map((t) => t[key]);
  const phase = (label: string, key: keyof GitTimes) => [
    row(`    ${label}: service`, git(service, key)),
    row(`    ${label}: plain git`, git(plainGit, key)),
  ];
  const settledToFinished = (results: Results) => results.deployments.map((d) => d.settledToFinished);
  return [
    "keptn-gitops-service deployment benchmark (npm run bench)",
    ...header,
    `run        ${deployments.length} deployments of carts to sockshop/dev, one at a time, after 1 warm-up; ` +
      `images ${image(1)} .. 1.0.${deployments.length}; once per Argo CD signal (poll, watch, webhook)`,
    `argo cd    simulator: poll ${ARGO.pollIntervalMs} ms, sync ${ARGO.syncDurationMs} ms, ` +
      `health ${ARGO.healthDelayMs} ms; application ${APPLICATION}, automated sync`,
    `service    in this process; Argo CD pollInterval ${SERVICE_POLL_INTERVAL_MS} ms (poll run), ` +
      `${WATCH_RUN_POLL_INTERVAL_MS / 1000} s (watch and webhook runs); log level ${LOG_LEVEL} (JSON lines kept in memory)`,
    "",
    `${"".padEnd(LABEL)}   n    median       p90       min       max`,
    row(
      "(a) triggered published -> deployment.started received",
      deployments.map((d) => d.started),
    ),
    row(`    baseline: NATS round trip via a 2nd connection (${triggeredBytes} B)`, roundTrips),
    ratio(
      deployments.map((d) => d.started),
      roundTrips,
    ),
    row("(b) triggered published -> git server answered the service's push", git(service, "total")),
    row("    baseline: plain git fetch/reset/edit/commit/push, warm clone", git(plainGit, "total")),
    ratio(git(service, "total"), git(plainGit, "total")),
    row(
      "(c) Argo CD settled (Synced, Healthy) -> deployment.finished received",
      settledToFinished(argo.poll),
    ),
    `    polling only (watch: false), pollInterval ${SERVICE_POLL_INTERVAL_MS} ms: (c) is at most about this plus one GET`,
    row("(d) the same with the watch stream (watch: true, pollInterval 60 s)", settledToFinished(argo.watch)),
    row(
      "(d') the same from a notification (watch: false, pollInterval 60 s)",
      settledToFinished(argo.webhook),
    ),
    "    (d) and (d') have no baseline: the frame or the notification is the signal; (c) is the polling they replace",
    "",
    ...bursts.flatMap((burstResult) => [
      `(e) ${burstResult.count} deployments triggered at once (${burstResult.watch ? "watch stream" : "watch: false, shared poll schedule"}, pollInterval ${BURST_POLL_INTERVAL_MS / 1000} s): ` +
        `all finished in ${burstResult.seconds.toFixed(1)} s`,
      `    Argo CD API requests per deployment: ${(burstResult.requests / burstResult.count).toFixed(2)} ` +
        `(${burstResult.requests} in all: ${byKind(burstResult.byKind)})`,
      naiveLine(burstResult.count, burstResult.seconds),
    ]),
    ...gitBurstLines(gitBurstResult),
    "",
    `Flux: ${flux.poll.length} deployments of podtato-head to podtato/dev per signal, one at a time, after 1 warm-up; ` +
      `Flux simulator, Kustomization ${"podtato-head-dev"}`,
    `${"".padEnd(LABEL)}   n    median       p90       min       max`,
    row(`(f) Flux applied (Ready, at the commit) -> finished: poll ${FLUX_POLL_INTERVAL_MS} ms`, flux.poll),
    row("    the same with the watch (watch: true, pollInterval 60 s)", flux.watch),
    row("    the same from a notification (watch: false, pollInterval 60 s)", flux.webhook),
    ...fluxBursts.flatMap((result) => [
      `(g) ${result.count} Flux deployments triggered at once (${result.watch ? "watch" : "watch: false, each deployment polls"}, pollInterval ${BURST_POLL_INTERVAL_MS / 1000} s): ` +
        `all finished in ${result.seconds.toFixed(1)} s`,
      `    Kubernetes API requests per deployment: ${(result.requests / result.count).toFixed(2)} ` +
        `(${result.requests} in all: ${byKind(result.byKind)})`,
    ]),
    "",
    "where (b) goes, as the git server saw it",
    ...phase("start -> first git request received", "toFirstRequest"),
    ...phase("-> push begins (fetch, local git work)", "fetchAndLocal"),
    ...phase("-> push answered (receive-pack)", "push"),
    "",
    "for context (no baseline)",
    row(
      "    triggered published -> deployment.finished received",
      deployments.map((d) => d.total),
    ),
    "",
    `the bench took ${seconds.toFixed(1)} s`,
  ].join("\n");
}

// ---- main -------------------------------------------------------------------------------------------------

/** `--deployments N` (at least 20) and `--burst N` (at least 10), checked before anything starts. */
function benchArguments(): { deployments: number; burst: number } {
  const { values } = parseArgs({ options: { deployments: { type: "string" }, burst: { type: "string" } } });
  const wholeNumber = (value: string | undefined, fallback: number, min: number, flag: string) => {
    const count = Number(value ?? fallback);
    if (!Number.isInteger(count) || count < min)
      throw new Error(`${flag} must be a whole number of at least ${min}`);
    return count;
  };
  return {
    deployments: wholeNumber(values.deployments, DEFAULT_DEPLOYMENTS, MIN_DEPLOYMENTS, "--deployments"),
    burst: wholeNumber(values.burst, DEFAULT_BURST, MIN_BURST, "--burst"),
  };
}

async function main(): Promise<void> {
  const began = performance.now();
  const { deployments: count, burst: burstSize } = benchArguments();
  const header = await machine();
  const interrupt = new AbortController();
  const onSigint = () => interrupt.abort();
  process.once("SIGINT", onSigint);
  const argo: Partial<Record<ArgoSignal, Results>> = {};
  for (const signal of ["poll", "watch", "webhook"] as const) {
    const world = await DeploymentWorld.start({
      argo: ARGO,
      servicePollIntervalMs: signal === "poll" ? SERVICE_POLL_INTERVAL_MS : WATCH_RUN_POLL_INTERVAL_MS,
      watch: signal === "watch",
      logLevel: LOG_LEVEL,
      ...(signal === "webhook"
        ? { webhooks: { fluxHmacKey: "bench-unused-flux-key", argocdToken: ARGOCD_WEBHOOK_TOKEN } }
        : {}),
    });
    try {
      argo[signal] = await run(world, count, interrupt.signal, signal);
    } finally {
      await world.stop();
      if (interrupt.signal.aborted) {
        // A Ctrl-C in a terminal reaches nats-server too, and then the service's NATS client keeps reconnecting
        // after stop() (see docs/benchmarks.md). Everything the bench started is stopped: exit, do not wait.
        console.error("interrupted; everything the bench started is stopped");
        process.exit(130);
      }
    }
  }
  const bursts: BurstResult[] = [];
  for (const watch of [true, false]) {
    const burstWorld = await DeploymentWorld.start({
      argo: ARGO,
      servicePollIntervalMs: BURST_POLL_INTERVAL_MS,
      watch,
      logLevel: LOG_LEVEL,
    });
    try {
      bursts.push({ ...(await burst(burstWorld, burstSize)), watch });
    } finally {
      await burstWorld.stop();
    }
  }
  if (!argo.poll) throw new Error("the poll run of the bench did not finish");
  const plainCycleMs = summarize(argo.poll.plainGit.map((times) => times.total)).median;
  const gitBurstResult = await gitBurst(GIT_BURST, plainCycleMs);
  const flux: Partial<Record<FluxSignal, number[]>> = {};
  for (const signal of ["poll", "watch", "webhook"] as const)
    flux[signal] = await fluxSignalSamples(signal, count);
  const fluxBursts: FluxBurstResult[] = [];
  for (const watch of [true, false])
    fluxBursts.push(await fluxBurst(watch, burstSize, BURST_POLL_INTERVAL_MS));
  process.off("SIGINT", onSigint);
  if (!argo.poll || !argo.watch || !argo.webhook || !flux.poll || !flux.watch || !flux.webhook) {
    throw new Error("a run of the bench did not finish");
  }
  console.log(
    report(
      { poll: argo.poll, watch: argo.watch, webhook: argo.webhook },
      bursts,
      gitBurstResult,
      { poll: flux.poll, watch: flux.watch, webhook: flux.webhook },
      fluxBursts,
      header,
      (performance.now() - began) / 1000,
    ),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
