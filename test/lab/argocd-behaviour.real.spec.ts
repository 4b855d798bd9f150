import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { argoCdBehaviour } from "../e2e/argocd-behaviour.js";
import { ArgoCdLab } from "./argocd-lab.js";
import { KubeLab } from "./kube-lab.js";
import { requireLabBinaries } from "./lab-paths.js";

// The pins of test/e2e/argocd-behaviour.ts against the real Argo CD of the lab, on an API server of their own.
let kube: KubeLab | undefined;
let dir: string | undefined;

argoCdBehaviour({
  backend: "real Argo CD (lab)",
  settleMs: 60_000,
  start: async (setup) => {
    await requireLabBinaries(["kube-apiserver", "argocd", "helm"]);
    dir = await mkdtemp(join(tmpdir(), "lab-argocd-pins-"));
    kube = await KubeLab.start(dir);
    return ArgoCdLab.start(kube, dir, setup);
  },
  stop: async () => {
    await kube?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  },
});
