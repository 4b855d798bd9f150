import { createHmac } from "node:crypto";

// Notifications as the GitOps tools post them, for the tests and the bench that play notification-controller.

/** A Flux event as notification-controller v1.9 posts it (shape pinned in test/lab/flux-notifications.real.spec.ts). */
export function fluxEvent(name: string, revision: string, reason = "ReconciliationSucceeded"): string {
  return JSON.stringify({
    involvedObject: {
      kind: "Kustomization",
      namespace: "flux-system",
      name,
      uid: "2b9e7f0a-4d1c-4a57-9a3e-8f6d2c1b0e9d",
      apiVersion: "kustomize.toolkit.fluxcd.io/v1",
      resourceVersion: "4242",
    },
    severity: "info",
    timestamp: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    message: "Reconciliation finished in 1.2s, next run in 1h0m0s",
    reason,
    metadata: { commit_status: "update", revision },
    reportingController: "kustomize-controller",
    reportingInstance: "kustomize-controller-6bc5d5b96-j9lw6",
  });
}

/** The `X-Signature` of a generic-hmac Provider: HMAC-SHA256 of the raw body with the Provider's key. */
export const signFluxEvent = (body: string, key: string) =>
  `sha256=${createHmac("sha256", key).update(body).digest("hex")}`;
