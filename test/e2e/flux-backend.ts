import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FluxSimulator, receiverWebhookPath } from "../simulators/flux/flux-simulator.js";
import type { GitopsSetup } from "./argocd-backend.js";
import type { FluxBackend, FluxBackendFactory, FluxObjectView } from "./world.js";

/** The Flux objects both backends run: one GitRepository, one Kustomization per stage of podtato-head. */
export const FLUX_KUSTOMIZATIONS = [
  { name: "podtato-head-dev", path: "./clusters/dev/podtato-head", wait: false },
  { name: "podtato-head-health", path: "./clusters/health/podtato-head", wait: true },
] as const;

/** A HelmRelease both backends create, in the words of the simulator's and the lab's options. */
export interface FluxHelmReleaseSpec {
  name: string;
  source: string;
  chart: string;
  valuesFiles: string[];
  reconcileStrategy: "ChartVersion" | "Revision";
  targetNamespace: string;
  install: { createNamespace: boolean; disableWait: boolean };
  upgrade: { disableWait: boolean };
}

const podtatoHelmRelease = (
  stage: string,
  reconcileStrategy: FluxHelmReleaseSpec["reconcileStrategy"],
  waitOnUpgrade: boolean,
): FluxHelmReleaseSpec => ({
  name: `podtato-head-helm-${stage}`,
  source: "gitops",
  chart: "./flux-charts/podtato-head",
  valuesFiles: ["flux-charts/podtato-head/values.yaml", `flux-charts/podtato-head/values-${stage}.yaml`],
  reconcileStrategy,
  targetNamespace: `podtato-helm-${stage}`,
  // Helm waits for the Deployment unless told not to, and no Deployment becomes ready in the lab (no nodes).
  install: { createNamespace: true, disableWait: true },
  upgrade: { disableWait: !waitOnUpgrade },
});

/**
 * The HelmReleases of `flux-charts/podtato-head` (test/e2e/world.ts), one per stage of the project `podtato-helm`:
 * - `dev` releases every commit (`reconcileStrategy: Revision`) without waiting for the Deployment;
 * - `wait` installs without waiting, but its upgrades wait for the Deployment, which never becomes ready in the lab
 *   (and, in the simulator, not with a `hang` tag): the timeout scenario;
 * - `pinned` keeps the CRD default `ChartVersion`, which the service refuses to track.
 */
export const FLUX_HELM_RELEASES: readonly FluxHelmReleaseSpec[] = [
  podtatoHelmRelease("dev", "Revision", false),
  podtatoHelmRelease("wait", "Revision", true),
  podtatoHelmRelease("pinned", "ChartVersion", false),
];

export const FLUX_SIMULATOR_TOKEN = "flux-simulator-token-3e5f";

/** The token of the Receiver `keptn-gitops` (generic-hmac, on the GitRepository `gitops`) both backends can run. */
export const FLUX_RECEIVER_TOKEN = "flux-receiver-token-8a6c4e2f0b";

export interface FluxBackendOptions {
  /** Also the HelmReleases of FLUX_HELM_RELEASES. */
  helm?: boolean;
  /**
   * Also the Receiver `keptn-gitops`, which the service then calls instead of patching; `wrongKey` gives the service
   * another key than the Receiver's token.
   */
  receiver?: "right-key" | "wrong-key";
}

/** The key the service is given for the Receiver. */
export const receiverKeyFor = (receiver: FluxBackendOptions["receiver"]) =>
  receiver === "wrong-key" ? "not-the-receiver-token-1234" : FLUX_RECEIVER_TOKEN;

/**
 * The Flux simulator as a backend, with the Kustomizations, and with `{ helm: true }` the HelmReleases of
 * FLUX_HELM_RELEASES too (as `fluxLabBackend({ helm: true })`; without them a commit upgrades no release). Its
 * health checks (and Helm's waits) fail after 2.5 s instead of the real 30 s floor: longer than the 1 s timeout of
 * the projects `podtato-slow` and `podtato-helm-slow`, as 30 s is longer than the lab's 20 s.
 */
export function fluxSimulatorBackend(options: FluxBackendOptions = {}): FluxBackendFactory {
  return async (setup: GitopsSetup): Promise<FluxBackend> => {
    const simulator = new FluxSimulator({
      token: FLUX_SIMULATOR_TOKEN,
      healthCheckTimeoutMs: 2_500,
      gitRepositories: [{ name: "gitops", gitDir: setup.bareDir, url: setup.repoUrl, interval: "1h" }],
      kustomizations: FLUX_KUSTOMIZATIONS.map((k) => ({
        name: k.name,
        source: "gitops",
        path: k.path,
        wait: k.wait,
        timeout: "30s",
        interval: "1h",
      })),
      helmReleases: options.helm ? FLUX_HELM_RELEASES.map((hr) => ({ ...hr, interval: "1h" })) : [],
      receivers: options.receiver
        ? [
            {
              name: "keptn-gitops",
              type: "generic-hmac",
              token: FLUX_RECEIVER_TOKEN,
              resources: [{ kind: "GitRepository", name: "gitops" }],
            },
          ]
        : [],
    });
    await simulator.start();
    const dir = await mkdtemp(join(tmpdir(), "flux-sim-"));
    const kubeconfig = join(dir, "kubeconfig");
    await writeFile(kubeconfig, simulator.kubeconfig());
    const read = async (path: string): Promise<FluxObjectView> => {
      const answer = await fetch(`${simulator.url}/apis/${path}`, {
        headers: { authorization: `Bearer ${FLUX_SIMULATOR_TOKEN}` },
      });
      return (await answer.json()) as FluxObjectView;
    };
    return {
      kubeconfig,
      requests: simulator.requests,
      simulator,
      ...(options.receiver
        ? {
            receiver: {
              url: `${simulator.url}${receiverWebhookPath(FLUX_RECEIVER_TOKEN, "keptn-gitops")}`,
              hmacKey: receiverKeyFor(options.receiver),
            },
          }
        : {}),
      kustomization: (name) =>
        read(`kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/${name}`),
      gitRepository: (name) =>
        read(`source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/${name}`),
      helmRelease: (name) => read(`helm.toolkit.fluxcd.io/v2/namespaces/flux-system/helmreleases/${name}`),
      stop: async () => {
        await simulator.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  };
}
