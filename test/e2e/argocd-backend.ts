import {
  ArgoCdSimulator,
  type IgnoreDifferenceJson,
  type LiveHealth,
  type RetryStrategyJson,
} from "../simulators/argocd/argocd-simulator.js";

/** One Argo CD API call as the service made it. */
export interface RecordedCall {
  method: string;
  path: string;
  query: Record<string, string>;
  body?: unknown;
}

/**
 * What the deployment scenarios need from an Argo CD: its API URL and token, the calls the service made, and a
 * way to make the next calls fail. The simulator provides it directly; the lab puts a recording proxy in front
 * of the real argocd-server.
 */
export interface ArgoCdBackend {
  readonly url: string;
  readonly token: string;
  readonly requests: RecordedCall[];
  injectFailures(count: number, status?: number): void;
  /** What the traps of test/e2e/never-fooled.ts do to the cluster behind Argo CD. */
  readonly levers?: ClusterLevers;
  stop(): Promise<void>;
}

/**
 * Changes to the cluster that no git commit makes, as operators and controllers make them. The lab makes them for
 * real (an AppProject sync window, a patch of the live Deployment); the simulator has a stand-in for each.
 */
export interface ClusterLevers {
  /** A deny sync window for `app`: Argo CD does not sync it, automatically or on request, until lifted. */
  denySyncs(app: string, denied: boolean): Promise<void>;
  /**
   * The health the live Deployment of `app` reports (the lab's `lab.keptn.sh/health` annotation, read by its Lua
   * health script); undefined gives it back its rollout's own.
   */
  setLiveHealth(app: string, health: LiveHealth | undefined): Promise<void>;
}

/** The GitOps repository as the backend must read it. */
export interface GitopsSetup {
  bareDir: string;
  /** The URL the service pushes to (smart HTTP, token required). */
  repoUrl: string;
  gitUsername: string;
  gitToken: string;
}

export type ArgoCdBackendFactory = (setup: GitopsSetup) => Promise<ArgoCdBackend>;

/** An Argo CD application of the fixture repository. */
export interface LabApplication {
  name: string;
  path: string;
  /** Automated sync policy; without it the service must start the sync. */
  automated: boolean;
  /** Helm value files of a chart source; absent for a directory of plain manifests. */
  valueFiles?: string[];
  namespace: string;
  /** spec.syncPolicy.retry; without it Argo CD v3 retries a failed automated sync 5 times (5s, 10s, ... 80s). */
  retry?: RetryStrategyJson;
  /** spec.ignoreDifferences */
  ignoreDifferences?: IgnoreDifferenceJson[];
}

/** One quick retry: the failed-sync scenario gets Argo CD's final verdict in about a second. */
const QUICK_RETRY: RetryStrategyJson = {
  limit: 1,
  backoff: { duration: "1s", factor: 1, maxDuration: "1s" },
};

/** The applications both backends run: dev syncs on its own; production needs a sync call. */
export const APPLICATIONS: LabApplication[] = [
  {
    name: "carts-dev",
    path: "charts/carts",
    automated: true,
    valueFiles: ["values-dev.yaml"],
    namespace: "sockshop-dev",
  },
  {
    name: "orders-dev",
    path: "charts/orders",
    automated: true,
    valueFiles: ["values-dev.yaml"],
    namespace: "sockshop-dev",
    retry: QUICK_RETRY,
  },
  {
    name: "carts-production",
    path: "charts/carts",
    automated: false,
    valueFiles: ["values-production.yaml"],
    namespace: "sockshop-production",
  },
  {
    name: "orders-production",
    path: "manifests/production/orders",
    automated: false,
    namespace: "sockshop-production",
  },
];

/** `payments-<stage>`: chart `charts/payments` with `values-<stage>.yaml`, in namespace `sockshop-<stage>`. */
const payments = (stage: string, app: Pick<LabApplication, "automated"> & Partial<LabApplication>) => ({
  name: `payments-${stage}`,
  path: "charts/payments",
  valueFiles: [`values-${stage}.yaml`],
  namespace: `sockshop-${stage}`,
  ...app,
});

/**
 * The applications of the never-fooled traps (test/e2e/never-fooled.ts), one per trap, so that the other scenarios
 * never see them: Keptn project `sockshop`, service `payments` (files: `paymentsGitopsFiles`, which the traps
 * commit). Only the worlds of those traps run them.
 */
export const PAYMENTS_APPLICATIONS: LabApplication[] = [
  // a stale Healthy from before the rollout
  payments("dev", { automated: true }),
  // a sync of an older revision, started by an operator while the deployment waits
  payments("production", { automated: false }),
  // Synced at the new revision, although the new image was never applied
  payments("canary", {
    automated: false,
    ignoreDifferences: [
      { group: "apps", kind: "Deployment", jsonPointers: ["/spec/template/spec/containers/0/image"] },
    ],
  }),
  // Synced at the new revision with a failed operation: its values turn on a PostSync hook
  payments("qa", { automated: true, retry: QUICK_RETRY }),
  // a health that flaps
  payments("staging", { automated: true }),
];

/** JWT-shaped, as argocd-server only reads bearer tokens with three dot-separated parts. */
export const SIMULATOR_TOKEN =
  "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJrZXB0bi1naXRvcHMifQ.c2ltdWxhdG9yLTEyMzQ1Njc4OTA";

export interface SimulatorTimings {
  pollIntervalMs?: number;
  syncDurationMs?: number;
  healthDelayMs?: number;
}

/**
 * The Argo CD simulator as a backend, running `applications` (default `APPLICATIONS`); `simulator` is there for
 * what only it offers (the `settled` event).
 */
export function simulatorBackend(
  timings: SimulatorTimings = {},
  applications: LabApplication[] = APPLICATIONS,
): (setup: GitopsSetup) => Promise<ArgoCdBackend & { simulator: ArgoCdSimulator }> {
  return async (setup) => {
    const simulator = new ArgoCdSimulator({
      token: SIMULATOR_TOKEN,
      apps: applications.map((app) => ({
        name: app.name,
        repoURL: setup.repoUrl,
        gitDir: setup.bareDir,
        path: app.path,
        ...(app.valueFiles ? { valueFiles: app.valueFiles } : {}),
        automated: app.automated,
        ...(app.retry ? { retry: app.retry } : {}),
        ...(app.ignoreDifferences ? { ignoreDifferences: app.ignoreDifferences } : {}),
      })),
      pollIntervalMs: timings.pollIntervalMs ?? 100,
      syncDurationMs: timings.syncDurationMs ?? 50,
      healthDelayMs: timings.healthDelayMs ?? 50,
    });
    await simulator.start();
    return {
      simulator,
      get url() {
        return simulator.url;
      },
      token: SIMULATOR_TOKEN,
      requests: simulator.requests,
      injectFailures: (count, status) => simulator.injectFailures(count, status),
      levers: {
        denySyncs: async (app, denied) => simulator.denySyncs(app, denied),
        setLiveHealth: (app, health) => simulator.setLiveHealth(app, health),
      },
      stop: () => simulator.stop(),
    };
  };
}
