import { fluxSignalScenarios } from "../e2e/flux-signals.js";
import { DeploymentWorld } from "../e2e/world.js";
import { fluxLabBackend } from "./flux-lab.js";

// The Flux signal scenarios of test/e2e/flux-signals.spec.ts against the real source-controller,
// kustomize-controller and kube-apiserver, through client-node's list-and-watch.
fluxSignalScenarios({
  backend: "real Flux (lab)",
  testTimeoutMs: 120_000,
  startWatchWorld: () =>
    DeploymentWorld.start({
      flux: fluxLabBackend(),
      fluxWatch: true,
      servicePollIntervalMs: 60_000,
      answerTimeoutMs: 60_000,
    }),
  startPollWorld: () =>
    DeploymentWorld.start({
      flux: fluxLabBackend(),
      fluxWatch: false,
      servicePollIntervalMs: 250,
      answerTimeoutMs: 60_000,
    }),
});
