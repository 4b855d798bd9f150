import { fluxSimulatorBackend } from "./flux-backend.js";
import { fluxSignalScenarios } from "./flux-signals.js";
import { DeploymentWorld } from "./world.js";

fluxSignalScenarios({
  backend: "Flux simulator",
  testTimeoutMs: 30_000,
  startWatchWorld: () =>
    DeploymentWorld.start({ flux: fluxSimulatorBackend(), fluxWatch: true, servicePollIntervalMs: 60_000 }),
  startPollWorld: () => DeploymentWorld.start({ flux: fluxSimulatorBackend(), fluxWatch: false }),
});
