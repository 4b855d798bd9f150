import { fluxSimulatorBackend } from "./flux-backend.js";
import { helmReleaseScenarios } from "./helm-release-scenarios.js";
import { DeploymentWorld } from "./world.js";

helmReleaseScenarios({
  backend: "Flux simulator",
  testTimeoutMs: 20_000,
  slowTimeout: "1s",
  startWorld: () => DeploymentWorld.start({ flux: fluxSimulatorBackend({ helm: true }), slowTimeout: "1s" }),
});
