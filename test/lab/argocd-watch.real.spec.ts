import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sharedPollScenarios, watchScenarios } from "../e2e/argocd-watch.js";
import { DeploymentWorld } from "../e2e/world.js";
import { ArgoCdLab } from "./argocd-lab.js";
import { KubeLab } from "./kube-lab.js";
import { requireLabBinaries } from "./lab-paths.js";

let kube: KubeLab | undefined;
let dir: string | undefined;

watchScenarios({
  backend: "real Argo CD (lab)",
  testTimeoutMs: 60_000,
  startWorld: async () => {
    await requireLabBinaries(["kube-apiserver", "argocd", "helm"]);
    dir = await mkdtemp(join(tmpdir(), "lab-argocd-watch-"));
    kube = await KubeLab.start(dir);
    return DeploymentWorld.start({ backend: ArgoCdLab.backend(kube, dir), servicePollIntervalMs: 60_000 });
  },
});

sharedPollScenarios({
  backend: "real Argo CD (lab)",
  testTimeoutMs: 60_000,
  startWorld: async () => {
    dir2 = await mkdtemp(join(tmpdir(), "lab-argocd-shared-poll-"));
    kube2 = await KubeLab.start(dir2);
    return DeploymentWorld.start({
      backend: ArgoCdLab.backend(kube2, dir2),
      watch: false,
      servicePollIntervalMs: 250,
    });
  },
});

let kube2: KubeLab | undefined;
let dir2: string | undefined;

after(async () => {
  await kube2?.stop();
  if (dir2) await rm(dir2, { recursive: true, force: true });
  await kube?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});
