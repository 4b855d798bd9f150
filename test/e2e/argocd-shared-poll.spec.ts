import { sharedPollScenarios } from "./argocd-watch.js";
import { DeploymentWorld } from "./world.js";

sharedPollScenarios({
  backend: "Argo CD simulator",
  testTimeoutMs: 40_000,
  startWorld: () => DeploymentWorld.start({ watch: false, servicePollIntervalMs: 100 }),
});
