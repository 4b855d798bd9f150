import { simulatorBackend } from "./argocd-backend.js";
import { argoCdBehaviour } from "./argocd-behaviour.js";

// The pins of test/e2e/argocd-behaviour.ts against the simulator; test/lab/argocd-behaviour.real.spec.ts runs
// them against the real Argo CD.
argoCdBehaviour({ backend: "simulator", settleMs: 10_000, start: simulatorBackend() });
