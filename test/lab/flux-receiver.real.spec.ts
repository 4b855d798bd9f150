import { fluxReceiverScenarios } from "../e2e/flux-receiver.js";
import { DeploymentWorld } from "../e2e/world.js";
import { fluxLabBackend } from "./flux-lab.js";

// The Receiver scenarios of test/e2e/flux-receiver.spec.ts against the real notification-controller v1.9.3, with
// the Secret and the Receiver applied as docs/notifications.md has them.
fluxReceiverScenarios({
  backend: "real Flux (lab)",
  testTimeoutMs: 120_000,
  startWorld: () =>
    DeploymentWorld.start({
      flux: fluxLabBackend({ notifications: true, receiver: "right-key" }),
      answerTimeoutMs: 60_000,
      servicePollIntervalMs: 250,
    }),
  startWrongKeyWorld: () =>
    DeploymentWorld.start({
      flux: fluxLabBackend({ notifications: true, receiver: "wrong-key" }),
      answerTimeoutMs: 60_000,
      servicePollIntervalMs: 250,
    }),
});
