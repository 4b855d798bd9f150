import { watchScenarios } from "./argocd-watch.js";
import { DeploymentWorld } from "./world.js";

watchScenarios({
  backend: "Argo CD simulator",
  testTimeoutMs: 30_000,
  startWorld: () => DeploymentWorld.start({ servicePollIntervalMs: 60_000 }),
});
