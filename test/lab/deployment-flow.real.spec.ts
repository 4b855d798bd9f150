import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deploymentScenarios } from "../e2e/deployment-scenarios.js";
import { DeploymentWorld } from "../e2e/world.js";
import { ArgoCdLab } from "./argocd-lab.js";
import { KubeLab } from "./kube-lab.js";
import { requireLabBinaries } from "./lab-paths.js";

// The same scenarios as test/e2e/deployment-flow.spec.ts, against the real Argo CD of the lab: a real
// kube-apiserver (no nodes), argocd-repo-server rendering the fixture's Helm charts with a real helm, the
// application-controller syncing into the API server, and argocd-server answering the service.
let kube: KubeLab | undefined;
let dir: string | undefined;

const SLOW_TIMEOUT = "30s";

deploymentScenarios({
  backend: "real Argo CD (lab)",
  slowTimeout: SLOW_TIMEOUT,
  testTimeoutMs: 120_000,
  startWorld: async () => {
    await requireLabBinaries(["kube-apiserver", "argocd", "helm"]);
    dir = await mkdtemp(join(tmpdir(), "lab-argocd-"));
    kube = await KubeLab.start(dir);
    return DeploymentWorld.start({
      backend: ArgoCdLab.backend(kube, dir),
      slowTimeout: SLOW_TIMEOUT,
      answerTimeoutMs: 90_000,
      servicePollIntervalMs: 250,
    });
  },
});

after(async () => {
  await kube?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});
