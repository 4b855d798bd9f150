import { fluxSimulatorBackend } from "./flux-backend.js";
import { fluxReceiverScenarios } from "./flux-receiver.js";
import { DeploymentWorld } from "./world.js";

fluxReceiverScenarios({
  backend: "Flux simulator",
  testTimeoutMs: 20_000,
  startWorld: () => DeploymentWorld.start({ flux: fluxSimulatorBackend({ receiver: "right-key" }) }),
  startWrongKeyWorld: () => DeploymentWorld.start({ flux: fluxSimulatorBackend({ receiver: "wrong-key" }) }),
});
