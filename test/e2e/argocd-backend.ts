import { ArgoCdSimulator, type RetryStrategyJson } from "../simulators/argocd/argocd-simulator.js";

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
  stop(): Promise<void>;
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

/** JWT-shaped, as argocd-server only reads bearer tokens with three dot-separated parts. */
export const SIMULATOR_TOKEN =
  "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJrZXB0bi1naXRvcHMifQ.c2ltdWxhdG9yLTEyMzQ1Njc4OTA";

export interface SimulatorTimings {
  pollIntervalMs?: number;
  syncDurationMs?: number;
  healthDelayMs?: number;
}

/** The Argo CD simulator as a backend; `simulator` is there for what only it offers (the `settled` event). */
export function simulatorBackend(
  timings: SimulatorTimings = {},
): (setup: GitopsSetup) => Promise<ArgoCdBackend & { simulator: ArgoCdSimulator }> {
  return async (setup) => {
    const simulator = new ArgoCdSimulator({
      token: SIMULATOR_TOKEN,
      apps: APPLICATIONS.map((app) => ({
        name: app.name,
        repoURL: setup.repoUrl,
        gitDir: setup.bareDir,
        path: app.path,
        automated: app.automated,
        ...(app.retry ? { retry: app.retry } : {}),
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
      stop: () => simulator.stop(),
    };
  };
}
