import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PAYMENTS_APPLICATIONS } from "../e2e/argocd-backend.js";
import { neverFooledScenarios } from "../e2e/never-fooled.js";
import { DeploymentWorld } from "../e2e/world.js";
import { ArgoCdLab } from "./argocd-lab.js";
import { KubeLab } from "./kube-lab.js";
import { requireLabBinaries } from "./lab-paths.js";

// The traps of test/e2e/never-fooled.ts against the real Argo CD of the lab: the sync window is a real AppProject
// window, the flapping health a real patch of the live Deployment, read by the lab's Lua health script.
let kube: KubeLab | undefined;
let dir: string | undefined;

neverFooledScenarios({
  backend: "real Argo CD (lab)",
  settleMs: 60_000,
  testTimeoutMs: 120_000,
  startWorld: async () => {
    await requireLabBinaries(["kube-apiserver", "argocd", "helm"]);
    dir = await mkdtemp(join(tmpdir(), "lab-never-fooled-"));
    kube = await KubeLab.start(dir);
    return DeploymentWorld.start({
      backend: ArgoCdLab.backend(kube, dir, { applications: PAYMENTS_APPLICATIONS }),
      answerTimeoutMs: 90_000,
      servicePollIntervalMs: 250,
    });
  },
});

after(async () => {
  await kube?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});
