import { fluxScenarios } from "../e2e/flux-scenarios.js";
import { DeploymentWorld } from "../e2e/world.js";
import { fluxLabBackend } from "./flux-lab.js";

// The Flux scenarios of test/e2e/flux-flow.spec.ts against the real source-controller and kustomize-controller.
// Health checks never take less than 30 s in the real kustomize-controller, so the timeouts are longer here.
fluxScenarios({
  backend: "real Flux (lab)",
  testTimeoutMs: 120_000,
  slowTimeout: "20s",
  startWorld: () =>
    DeploymentWorld.start({
      flux: fluxLabBackend(),
      slowTimeout: "20s",
      answerTimeoutMs: 90_000,
      servicePollIntervalMs: 250,
    }),
});
