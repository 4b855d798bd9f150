// The deployment benchmark: `npm run bench` (-- --deployments N). What it measures and why is in
// docs/benchmarks.md. It plays Keptn against the same world as the e2e tests (real nats-server, real git behind
// `git http-backend`, the Argo CD simulator, the service in this process) and prints each figure next to a
// baseline measured in the same run.
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { cpus, loadavg, platform, release, totalmem } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { connect, type NatsConnection, type Subscription } from "nats";
import { DeploymentWorld, GIT_TOKEN, type KeptnEvent } from "../test/e2e/world.js";
import type { SettledEvent } from "../test/simulators/argocd/argocd-simulator.js";
import { basicAuth, type GitHttpRequestRecord } from "../test/support/git-http-server.js";
import { git } from "../test/support/gitops-fixture.js";
import { natsServerBinary } from "../test/support/nats-server.js";

/** Simulator timings: short, so that the run stays short; Argo CD itself polls git every 3 minutes. */
const ARGO = { pollIntervalMs: 100, syncDurationMs: 50, healthDelayMs: 50 } as const;
/** The service's `argocd.servers[].pollInterval` for the polling run (its default is 2 s). */
const SERVICE_POLL_INTERVAL_MS = 100;
/** The pollInterval of the watch run: so long that only the watch stream can finish a deployment in time. */
const WATCH_RUN_POLL_INTERVAL_MS = 60_000;
/** The service's default log level. */
const LOG_LEVEL = "info";
const APPLICATION = "carts-dev";
const VALUES_FILE = "charts/carts/values-dev.yaml";
const SERVICE_REPO = "gitops.git";
const BASELINE_REPO = "baseline.git";
const ECHO_REQUEST = "bench.echo.request";
const ECHO_REPLY = "bench.echo.reply";
const WAIT_MS = 15_000;
const DEFAULT_DEPLOYMENTS = 40;
const MIN_DEPLOYMENTS = 20;
const DEFAULT_BURST = 500;
const MIN_BURST = 10;

const image = (n: number) => `docker.io/keptnexamples/carts:1.0.${n}`;

// ---- statistics -------------------------------------------------------------------------------------------

interface Summary {
  n: number;
  median: number;
  p90: number;
  min: number;
  max: number;
}

/** Median (mean of the two middle samples when n is even), p90 by nearest rank, min, max. */
function summarize(samples: number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (i: number) => {
    const value = sorted[i];
    if (value === undefined) throw new Error(`no sample at index ${i} of ${sorted.length}`);
    return value;
  };
  const n = sorted.length;
  const mid = Math.floor(n / 2);
  return {
    n,
    median: n % 2 === 1 ? at(mid) : (at(mid - 1) + at(mid)) / 2,
    p90: at(Math.ceil(0.9 * n) - 1),
    min: at(0),
    max: at(n - 1),
  };
}

// ---- arrivals, stamped when they arrive -------------------------------------------------------------------

interface Arrival<T> {
  /** performance.now() when it arrived */
  at: number;
  value: T;
}

/** Things that arrive under a key; `wait` resolves with one that already arrived or arrives later. */
class Arrivals<T> {
  private readonly seen = new Map<string, Arrival<T>>();
  private readonly waiting = new Map<string, (arrival: Arrival<T>) => void>();

  add(key: string, at: number, value: T): void {
    if (this.seen.has(key)) return;
    const arrival = { at, value };
    this.seen.set(key, arrival);
    this.waiting.get(key)?.(arrival);
    this.waiting.delete(key);
  }

  wait(key: string, what: string): Promise<Arrival<T>> {
    const seen = this.seen.get(key);
    if (seen) return Promise.resolve(seen);
    let timer: NodeJS.Timeout | undefined;
    return new Promise<Arrival<T>>((resolve, reject) => {
      timer = setTimeout(() => {
        this.waiting.delete(key);
        reject(new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`));
      }, WAIT_MS);
      this.waiting.set(key, resolve);
    }).finally(() => clearTimeout(timer));
  }
}

/** Subscribes on `nc` and stamps each message with performance.now() before anything else is done with it. */
function stamp(
  nc: NatsConnection,
  subject: string,
  onMessage: (at: number, subject: string, data: Uint8Array) => void,
): Subscription {
  return nc.subscribe(subject, {
    callback: (error, msg) => {
      const at = performance.now();
      if (!error) onMessage(at, msg.subject, msg.data);
    },
  });
}

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

async function run(world: DeploymentWorld, count: number, interrupted: AbortSignal): Promise<Results> {
  const answers = new Arrivals<KeptnEvent>();
  const echoes = new Arrivals<Uint8Array>();
  const settled = new Arrivals<SettledEvent>();
  let triggeredBytes = 0;
  const decoder = new TextDecoder();
  const onSettled = (event: SettledEvent) => settled.add(`${event.app}@${event.revision}`, event.at, event);
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

const execFileText = async (file: string, args: string[]) =>
  (await promisify(execFile)(file, args)).stdout.trim();

/** The commit the bench runs from, and whether the working tree differs from it. */
async function sourceVersion(): Promise<string> {
  const root = fileURLToPath(new URL("..", import.meta.url));
  try {
    const commit = await execFileText("git", ["-C", root, "rev-parse", "--short", "HEAD"]);
    const dirty = (await execFileText("git", ["-C", root, "status", "--porcelain"])) !== "";
    return `commit ${commit}${dirty ? " with uncommitted changes" : ""}`;
  } catch {
    return "unknown (not a git checkout)";
  }
}

async function machine(): Promise<string[]> {
  const cores = cpus();
  const gitVersion = await execFileText("git", ["--version"]);
  const natsVersion = await execFileText(natsServerBinary(), ["--version"]);
  const source = await sourceVersion();
  const load = loadavg()
    .map((average) => average.toFixed(2))
    .join(" ");
  return [
    `date       ${new Date().toISOString()}`,
    `machine    ${cores[0]?.model ?? "unknown cpu"}, ${cores.length} cores, ` +
      `${(totalmem() / 2 ** 30).toFixed(1)} GiB, ${platform()} ${release()}`,
    `load       ${load} (1, 5, 15 min averages before the run; other work on the machine shows here)`,
    `versions   node ${process.version}, ${gitVersion}, ${natsVersion}`,
    `source     ${source}`,
  ];
}

const ms = (value: number) => `${value.toFixed(2)} ms`.padStart(10);
const LABEL = 70;

function row(label: string, samples: number[]): string {
  const s = summarize(samples);
  return `${label.padEnd(LABEL)}${String(s.n).padStart(4)}${ms(s.median)}${ms(s.p90)}${ms(s.min)}${ms(s.max)}`;
}

function ratio(measured: number[], baseline: number[]): string {
  const value = summarize(measured).median / summarize(baseline).median;
  return `${"    ratio of the medians".padEnd(LABEL)}${"".padStart(4)}${`x${value.toFixed(2)}`.padStart(10)}`;
}

function report(
  results: Results,
  watched: Results,
  bursts: BurstResult[],
  header: string[],
  seconds: number,
): string {
  const { deployments, roundTrips, plainGit, triggeredBytes } = results;
  const service = deployments.map((d) => d.git);
  const git = (times: GitTimes[], key: keyof GitTimes) => times.map((t) => t[key]);
  const phase = (label: string, key: keyof GitTimes) => [
    row(`    ${label}: service`, git(service, key)),
    row(`    ${label}: plain git`, git(plainGit, key)),
  ];
  return [
    "keptn-gitops-service deployment benchmark (npm run bench)",
    ...header,
    `run        ${deployments.length} deployments of carts to sockshop/dev, one at a time, after 1 warm-up; ` +
      `images ${image(1)} .. 1.0.${deployments.length}`,
    `argo cd    simulator: poll ${ARGO.pollIntervalMs} ms, sync ${ARGO.syncDurationMs} ms, ` +
      `health ${ARGO.healthDelayMs} ms; application ${APPLICATION}, automated sync`,
    `service    in this process; Argo CD pollInterval ${SERVICE_POLL_INTERVAL_MS} ms; ` +
      `log level ${LOG_LEVEL} (JSON lines kept in memory)`,
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
      deployments.map((d) => d.settledToFinished),
    ),
    `    polling only (watch: false), pollInterval ${SERVICE_POLL_INTERVAL_MS} ms: (c) is at most about this plus one GET`,
    row(
      "(d) the same with the watch stream (watch: true, pollInterval 60 s)",
      watched.deployments.map((d) => d.settledToFinished),
    ),
    "    (d) has no baseline: the stream frame itself is the signal; (c) is the polling it replaces",
    "",
    ...bursts.flatMap((burstResult) => [
      `(e) ${burstResult.count} deployments triggered at once (${burstResult.watch ? "watch stream" : "watch: false, shared poll schedule"}, pollInterval 2 s): ` +
        `all finished in ${burstResult.seconds.toFixed(1)} s`,
      `    Argo CD API requests per deployment: ${(burstResult.requests / burstResult.count).toFixed(2)} ` +
        `(${burstResult.requests} in all: ${Object.entries(burstResult.byKind)
          .map(([kind, n]) => `${n} ${kind}`)
          .join(", ")})`,
      `    baseline: one read per deployment per 2 s poll while in flight would be about ` +
        `${((burstResult.count * burstResult.seconds) / 2 / 2 / burstResult.count).toFixed(1)} per deployment ` +
        "(each in flight for half the run on average; the naive cost)",
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
  let results: Results | undefined;
  let watched: Results | undefined;
  for (const watch of [false, true]) {
    const world = await DeploymentWorld.start({
      argo: ARGO,
      servicePollIntervalMs: watch ? WATCH_RUN_POLL_INTERVAL_MS : SERVICE_POLL_INTERVAL_MS,
      watch,
      logLevel: LOG_LEVEL,
    });
    try {
      if (watch) watched = await run(world, count, interrupt.signal);
      else results = await run(world, count, interrupt.signal);
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
      servicePollIntervalMs: 2_000,
      watch,
      logLevel: LOG_LEVEL,
    });
    try {
      bursts.push({ ...(await burst(burstWorld, burstSize)), watch });
    } finally {
      await burstWorld.stop();
    }
  }
  process.off("SIGINT", onSigint);
  if (!results || !watched) throw new Error("a run of the bench did not finish");
  console.log(report(results, watched, bursts, header, (performance.now() - began) / 1000));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
