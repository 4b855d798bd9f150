import { createHmac } from "node:crypto";
import { RetryableError, TerminalError } from "../../shared/errors.js";

export interface FluxReceiverOptions {
  /** The cluster's name in the configuration, for messages. */
  cluster: string;
  /** The Receiver's URL: notification-controller's webhook-receiver Service and the Receiver's `status.webhookPath`. */
  url: string;
  /** The Receiver's token, for a `generic-hmac` Receiver (the body is signed); none for `generic`. */
  hmacKey?: string;
  requestTimeoutMs: number;
  /** Injected so tests need no global HTTP patching. */
  fetch?: typeof globalThis.fetch;
}

/**
 * A Flux notification-controller Receiver (notification.toolkit.fluxcd.io/v1, type `generic` or `generic-hmac`),
 * called right after a push instead of patching `reconcile.fluxcd.io/requestedAt` itself: notification-controller
 * then annotates the Receiver's resources (the GitRepository), so the service needs no `patch` permission. The URL
 * holds the Receiver's secret digest; it never appears in a message.
 */
export class FluxReceiver {
  private readonly fetch: typeof globalThis.fetch;

  constructor(private readonly options: FluxReceiverOptions) {
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  /** Posts `{ commit, object }` (signed for generic-hmac); 200 means the resources were annotated. */
  async notify(commit: string, object: string, signal?: AbortSignal): Promise<void> {
    const body = JSON.stringify({ source: "keptn-gitops-service", commit, object });
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (this.options.hmacKey) {
      headers["x-signature"] =
        `sha256=${createHmac("sha256", this.options.hmacKey).update(body).digest("hex")}`;
    }
    const where = `the Flux Receiver of cluster ${this.options.cluster}`;
    let answer: Response;
    try {
      answer = await this.fetch(this.options.url, {
        method: "POST",
        body,
        headers,
        signal: AbortSignal.any([
          ...(signal ? [signal] : []),
          AbortSignal.timeout(this.options.requestTimeoutMs),
        ]),
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw new RetryableError(`${where} did not answer: ${(error as Error).message}`, { cause: error });
    }
    // notification-controller answers with an empty body or a short plain-text reason.
    const said = (await answer.text().catch(() => "")).trim().slice(0, 200);
    if (answer.ok) return;
    const fix = `check flux.clusters.${this.options.cluster}.receiver`;
    if (answer.status === 404) {
      throw new TerminalError(
        `${where} does not exist at that URL (404); ${fix}.url and the Receiver's status.webhookPath`,
      );
    }
    if (answer.status === 400 || answer.status === 401 || answer.status === 403) {
      throw new TerminalError(
        `${where} refused the call (${answer.status}${said ? `: ${said}` : ""}); ${fix}.hmacKey and the Receiver's type and Secret`,
      );
    }
    // 503: the Receiver is suspended or not Ready yet; 5xx: it could not annotate its resources.
    throw new RetryableError(`${where} answered ${answer.status}${said ? `: ${said}` : ""}`);
  }
}
