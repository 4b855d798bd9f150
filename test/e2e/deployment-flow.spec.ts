import { deploymentScenarios } from "./deployment-scenarios.js";
import { DeploymentWorld } from "./world.js";

deploymentScenarios({
  backend: "Argo CD simulator",
  startWorld: () => DeploymentWorld.start(),
  slowTimeout: "2s",
  testTimeoutMs: 60_000,
});
