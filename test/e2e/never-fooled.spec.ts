import { PAYMENTS_APPLICATIONS, simulatorBackend } from "./argocd-backend.js";
import { neverFooledScenarios } from "./never-fooled.js";
import { DeploymentWorld } from "./world.js";

neverFooledScenarios({
  backend: "Argo CD simulator",
  settleMs: 10_000,
  testTimeoutMs: 30_000,
  // Like the real Argo CD (every 3 minutes), the simulator compares only when asked: the service's refresh
  // request, or an operator's, comes first.
  startWorld: () =>
    DeploymentWorld.start({ backend: simulatorBackend({ pollIntervalMs: 60_000 }, PAYMENTS_APPLICATIONS) }),
});
