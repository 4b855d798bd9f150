// (h) of the deployment benchmark: many services of one repository and branch triggered at once. The changes
// queued while a commit is made go into one commit (git.maxChangesPerCommit), so the figure is how many commits
// the burst took and how its wall time compares with that many plain git fetch-commit-push cycles.
import { performance } from "node:perf_hooks";
import { APPLICATIONS, simulatorBackend } from "../test/e2e/argocd-backend.js";
import { burstApplications, DeploymentWorld } from "../test/e2e/world.js";
import { burstGitopsFiles, burstServices, git, gitLog } from "../test/support/gitops-fixture.js";

/**
 * The simulator compares an application with git on each poll and on each refresh the service asks for; with
 * hundreds of applications a short poll would measure the simulator. Argo CD itself polls every 3 minutes.
 */
const SIMULATOR = { pollIntervalMs: 60_000, syncDurationMs: 50, healthDelayMs: 50 } as const;
/** The service's default maxChangesPerCommit. */
const MAX_CHANGES_PER_COMMIT = 50;

export interface GitBurstResult {
  count: number;
  /** First triggered published -> last deployment.finished received. */
  seconds: number;
  /** First triggered published -> the git server answered the last push of the burst. */
  pushedSeconds: number;
  /** Commits the service pushed for the burst. */
  commits: number;
  /** Deployments in the largest commit. */
  largestCommit: number;
  /** The median plain git fetch/reset/edit/commit/push cycle of the same run, in milliseconds. */
  plainCycleMs: number;
}

/**
 * `count` deployments of `count` different services (project sockshop, stage dev, one chart each in the same
 * repository) triggered at once; every one must pass with a commit that holds its change.
 */
export async function gitBurst(count: number, plainCycleMs: number): Promise<GitBurstResult> {
  const services = burstServices(count);
  const world = await DeploymentWorld.start({
    backend: simulatorBackend(SIMULATOR, [...APPLICATIONS, ...burstApplications(count)]),
    extraFiles: burstGitopsFiles(count),
    servicePollIntervalMs: 2_000,
    logLevel: "info",
    maxChangesPerCommit: MAX_CHANGES_PER_COMMIT,
  });
  try {
    // Warm-up, not counted: the service clones into its cache on its first deployment.
    const warm = world.trigger({ image: "docker.io/keptnexamples/carts:2.0.0" });
    await world.answersFor(warm.id, 60_000);
    const before = (await gitLog(world.fixture.bareDir))[0]!.sha;

    const firstRecord = world.gitServer.requests.length;
    const began = performance.now();
    const ids = services.map(
      (service) => world.trigger({ service, image: `docker.io/keptnexamples/${service}:2.0.0` }).id,
    );
    const finished = await Promise.all(ids.map((id) => world.answersFor(id, 600_000)));
    const seconds = (performance.now() - began) / 1000;

    const commits = new Map<string, number>();
    for (const [i, { finished: event }] of finished.entries()) {
      const commit = event.data.deployment?.gitCommit;
      if (event.data.result !== "pass" || !commit || !event.data.message?.startsWith("Committed")) {
        throw new Error(`burst deployment of ${services[i]}: ${event.data.result}: ${event.data.message}`);
      }
      commits.set(commit, (commits.get(commit) ?? 0) + 1);
    }
    const pushed = (
      await git(["--git-dir", world.fixture.bareDir, "rev-list", "--count", `${before}..main`])
    ).trim();
    if (Number(pushed) !== commits.size) {
      throw new Error(`the burst pushed ${pushed} commits, but the finished events name ${commits.size}`);
    }
    const pushes = world.gitServer.requests
      .slice(firstRecord)
      .filter((r) => r.method === "POST" && r.path.endsWith("/git-receive-pack"));
    const lastPush = Math.max(...pushes.map((r) => r.finishedAt ?? r.receivedAt));
    return {
      count,
      seconds,
      pushedSeconds: (lastPush - began) / 1000,
      commits: commits.size,
      largestCommit: Math.max(...commits.values()),
      plainCycleMs,
    };
  } finally {
    await world.stop();
  }
}

export function gitBurstLines(result: GitBurstResult): string[] {
  const cycles = result.commits * result.plainCycleMs;
  return [
    `(h) ${result.count} deployments of ${result.count} services into one repository and branch, triggered at once ` +
      `(maxChangesPerCommit ${MAX_CHANGES_PER_COMMIT}): all finished in ${result.seconds.toFixed(1)} s`,
    `    commits pushed: ${result.commits} (the largest holds ${result.largestCommit} deployments); ` +
      `the last push was answered ${result.pushedSeconds.toFixed(1)} s after the first triggered`,
    `    wall time / (commits x one plain git fetch-commit-push cycle of ${result.plainCycleMs.toFixed(0)} ms): ` +
      `x${((result.seconds * 1000) / cycles).toFixed(2)} ` +
      `(to the last push answered: x${((result.pushedSeconds * 1000) / cycles).toFixed(2)})`,
  ];
}
