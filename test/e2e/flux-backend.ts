import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FluxSimulator } from "../simulators/flux/flux-simulator.js";
import type { GitopsSetup } from "./argocd-backend.js";
import type { FluxBackend, FluxBackendFactory } from "./world.js";

/** The Flux objects both backends run: one GitRepository, one Kustomization per stage of podtato-head. */
export const FLUX_KUSTOMIZATIONS = [
  { name: "podtato-head-dev", path: "./clusters/dev/podtato-head", wait: false },
  { name: "podtato-head-health", path: "./clusters/health/podtato-head", wait: true },
] as const;

export const FLUX_SIMULATOR_TOKEN = "flux-simulator-token-3e5f";

/**
 * The Flux simulator as a backend. Its health checks fail after 2.5 s instead of the real 30 s floor: longer than
 * the 1 s timeout of the project `podtato-slow`, as 30 s is longer than the lab's 20 s.
 */
export function fluxSimulatorBackend(): FluxBackendFactory {
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
    });
    await simulator.start();
    const dir = await mkdtemp(join(tmpdir(), "flux-sim-"));
    const kubeconfig = join(dir, "kubeconfig");
    await writeFile(kubeconfig, simulator.kubeconfig());
    return {
      kubeconfig,
      kustomization: async (name) => {
        const path = `/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/${name}`;
        const answer = await fetch(`${simulator.url}${path}`, {
          headers: { authorization: `Bearer ${FLUX_SIMULATOR_TOKEN}` },
        });
        return (await answer.json()) as { status?: { lastAppliedRevision?: string } };
      },
      stop: async () => {
        await simulator.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  };
}
