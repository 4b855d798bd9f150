import { fluxSimulatorBackend } from "./flux-backend.js";
import { fluxScenarios } from "./flux-scenarios.js";
import { DeploymentWorld } from "./world.js";

fluxScenarios({
  backend: "Flux simulator",
  testTimeoutMs: 20_000,
  slowTimeout: "1s",
  startWorld: () => DeploymentWorld.start({ flux: fluxSimulatorBackend(), slowTimeout: "1s" }),
});
