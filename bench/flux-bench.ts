// The Flux part of `npm run bench`: settled -> finished per completion signal, and Kubernetes API requests per
// deployment with many in flight. What it measures and why is in docs/benchmarks.md.
import { performance } from "node:perf_hooks";
import { fluxSimulatorBackend } from "../test/e2e/flux-backend.js";
import { DeploymentWorld, type KeptnEvent } from "../test/e2e/world.js";
import type { WrittenVersion } from "../test/simulators/flux/flux-simulator.js";
import { fluxEvent, signFluxEvent } from "../test/support/notifications.js";
import { Arrivals, stamp } from "./bench-support.js";

export type FluxSignal = "poll" | "watch" | "webhook";

const KUSTOMIZATION = "podtato-head-dev";
const HMAC_KEY = "bench-flux-hmac-key-3c5e7a9b";
const LOG_LEVEL = "info";
/** The service's pollInterval when it polls (poll signal) and when it must not matter (watch, webhook). */
export const FLUX_POLL_INTERVAL_MS = 100;
const QUIET_POLL_INTERVAL_MS = 60_000;

const image = (n: number) => `ghcr.io/podtato-head/podtato-server:1.0.${n}`;

interface KustomizationVersion {
  metadata: { generation?: number };
  status?: {
    observedGeneration?: number;
    lastAppliedRevision?: string;
    conditions?: Array<{ type: string; status: string }>;
  };
}

/**
 * The commit a written Kustomization version shows as done, stated independently of the service's rules: it has
 * applied the revision at its generation, Ready=True, and nothing reconciling.
 */
function settledCommit(version: WrittenVersion): string | undefined {
  if (version.resource.kind !== "Kustomization" || version.name !== KUSTOMIZATION) return undefined;
  const object = JSON.parse(version.json) as KustomizationVersion;
  const status = object.status;
  const is = (type: string, value: string) =>
    status?.conditions?.some((c) => c.type === type && c.status === value);
  if (
    status?.observedGeneration !== object.metadata.generation ||
    !is("Ready", "True") ||
    is("Reconciling", "True")
  ) {
    return undefined;
  }
  return /@sha1:([0-9a-f]{40})$/.exec(status?.lastAppliedRevision ?? "")?.[1];
}

/** A world with the Flux simulator whose service learns of a finished reconcile only through `signal`. */
function fluxWorld(signal: FluxSignal, pollIntervalMs?: number): Promise<DeploymentWorld> {
  return DeploymentWorld.start({
    flux: fluxSimulatorBackend(),
    fluxWatch: signal === "watch",
    watch: false,
    servicePollIntervalMs:
      pollIntervalMs ?? (signal === "poll" ? FLUX_POLL_INTERVAL_MS : QUIET_POLL_INTERVAL_MS),
    logLevel: LOG_LEVEL,
    ...(signal === "webhook"
      ? { webhooks: { fluxHmacKey: HMAC_KEY, argocdToken: "bench-unused-argocd-token" } }
      : {}),
  });
}

/**
 * (f): `count` deployments through Flux one at a time, after one warm-up; for each, the time from the simulator
 * writing the Kustomization version that shows the commit done to the bench receiving `deployment.finished`.
 * With `webhook`, the bench posts notification-controller's `ReconciliationSucceeded` (signed) at that moment.
 */
export async function fluxSignalSamples(signal: FluxSignal, count: number): Promise<number[]> {
  const world = await fluxWorld(signal);
  const simulator = world.flux?.simulator;
  if (!simulator) throw new Error("the Flux bench needs the Flux simulator as the backend");
  const settled = new Arrivals<string>();
  const finished = new Arrivals<KeptnEvent>();
  const notifications: Array<Promise<unknown>> = [];
  const onWritten = (version: WrittenVersion & { at: number }) => {
    const sha = settledCommit(version);
    if (sha === undefined) return;
    settled.add(sha, version.at, sha);
    if (signal !== "webhook") return;
    const body = fluxEvent(KUSTOMIZATION, `main@sha1:${sha}`);
    notifications.push(
      fetch(`${world.httpUrl}/webhooks/flux`, {
        method: "POST",
        body,
        headers: { "content-type": "application/json", "x-signature": signFluxEvent(body, HMAC_KEY) },
      }).then((answer) => {
        if (answer.status !== 202) throw new Error(`the service answered ${answer.status} to a notification`);
      }),
    );
  };
  simulator.on("written", onWritten);
  const decoder = new TextDecoder();
  const subscription = stamp(world.keptn, "sh.keptn.event.deployment.finished", (at, _subject, data) => {
    const event = JSON.parse(decoder.decode(data)) as KeptnEvent;
    if (event.triggeredid) finished.add(event.triggeredid, at, event);
  });
  try {
    const samples: number[] = [];
    for (let n = 0; n <= count; n++) {
      const { id } = world.trigger({ project: "podtato", service: "podtato-head", image: image(n) });
      const answer = await finished.wait(id, `deployment.finished of Flux deployment ${n} (${signal})`);
      const data = answer.value.data;
      const commit = data.deployment?.gitCommit;
      if (data.result !== "pass" || !data.message?.startsWith("Committed") || commit === undefined) {
        throw new Error(`Flux deployment ${n} (${signal}) did not pass with a new commit: ${data.message}`);
      }
      const settle = await settled.wait(commit, `Flux applying ${commit}`);
      // The first deployment warms up the cache clone, the watch and the code; it is not counted.
      if (n > 0) samples.push(answer.at - settle.at);
    }
    await Promise.all(notifications);
    return samples;
  } finally {
    subscription.unsubscribe();
    simulator.off("written", onWritten);
    await world.stop();
  }
}

/** (g): `count` Flux deployments triggered at once; the Kubernetes API requests the service made for them. */
export interface FluxBurstResult {
  watch: boolean;
  count: number;
  seconds: number;
  requests: number;
  byKind: Record<string, number>;
}

export async function fluxBurst(
  watch: boolean,
  count: number,
  pollIntervalMs: number,
): Promise<FluxBurstResult> {
  const world = await fluxWorld(watch ? "watch" : "poll", pollIntervalMs);
  try {
    const requests = world.flux?.requests;
    if (!requests) throw new Error("the Flux bench needs a backend that records requests");
    const warm = world.trigger({ project: "podtato", service: "podtato-head", image: image(100_000) });
    await world.answersFor(warm.id, 60_000);
    const before = requests.length;
    const began = performance.now();
    const ids = Array.from(
      { length: count },
      (_, i) => world.trigger({ project: "podtato", service: "podtato-head", image: image(100_001 + i) }).id,
    );
    for (const id of ids) {
      const { finished } = await world.answersFor(id, 600_000);
      if (finished.data.result !== "pass")
        throw new Error(`Flux burst deployment ${id}: ${finished.data.message}`);
    }
    const seconds = (performance.now() - began) / 1000;
    const calls = requests.slice(before);
    const byKind: Record<string, number> = {};
    for (const call of calls) {
      // /apis/<group>/<version>/namespaces/<ns>/<plural>[/<name>]
      const named = call.path.split("/").length > 7;
      const kind =
        call.query["watch"] === "true"
          ? "watch"
          : call.method === "GET" && !named
            ? "list"
            : `${call.method} ${call.path.includes("/gitrepositories/") ? "GitRepository" : "Kustomization"}`;
      byKind[kind] = (byKind[kind] ?? 0) + 1;
    }
    return { watch, count, seconds, requests: calls.length, byKind };
  } finally {
    await world.stop();
  }
}
