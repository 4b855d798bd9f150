import { setTimeout } from "node:timers/promises";
import { connect, type NatsConnection, type Subscription } from "nats";
import type { Logger } from "../shared/logger.js";
import type { ControlPlane, DeliveryHandler, OutgoingEvent } from "./control-plane.js";
import { natsBinding, NatsBindingError } from "./nats-binding.js";

export interface NatsControlPlaneOptions {
  url: string;
  /** Queue group = integration name, as go-utils' cp-connector does, so replicas share the work. */
  queueGroup: string;
  logger: Logger;
  /** How long `start()` waits for the first connection. */
  connectTimeoutMs: number;
}

/** A NATS URL as it may be shown: user and password (NATS supports them in the URL) are left out. */
function withoutCredentials(url: string): string {
  return url.replace(/\/\/[^/@]*@/g, "//");
}

/** Keptn over core NATS, the way the in-cluster cp-connector talks to the control plane (protocol.md §1). */
export class NatsControlPlane implements ControlPlane {
  private connection: NatsConnection | undefined;
  private readonly subscriptions: Subscription[] = [];
  private connected = false;

  constructor(private readonly options: NatsControlPlaneOptions) {}

  async start(): Promise<void> {
    const { url, logger, connectTimeoutMs } = this.options;
    try {
      this.connection = await connect({
        servers: url,
        name: this.options.queueGroup,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        timeout: connectTimeoutMs,
      });
    } catch (error) {
      throw new Error(
        `could not connect to NATS at ${withoutCredentials(url)}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    this.connected = true;
    logger.info({ url: withoutCredentials(url) }, "connected to NATS");
    void this.watchStatus(this.connection);
  }

  private async watchStatus(connection: NatsConnection): Promise<void> {
    for await (const status of connection.status()) {
      if (status.type === "disconnect") {
        this.connected = false;
        this.options.logger.warn({ server: status.data }, "NATS connection lost");
      } else if (status.type === "reconnect") {
        this.connected = true;
        this.options.logger.info({ server: status.data }, "NATS connection restored");
      }
    }
  }

  async subscribe(eventTypes: string[], handler: DeliveryHandler): Promise<void> {
    const connection = this.requireConnection();
    for (const eventType of eventTypes) {
      const subscription = connection.subscribe(eventType, {
        queue: this.options.queueGroup,
        callback: (error, message) => {
          if (error) {
            this.options.logger.error({ err: error, eventType }, "NATS subscription error");
            return;
          }
          let body: unknown;
          try {
            body = natsBinding.toEvent({ subject: message.subject, data: message.data });
          } catch (decodeError) {
            if (!(decodeError instanceof NatsBindingError)) throw decodeError;
            this.options.logger.warn(
              { subject: message.subject, reason: decodeError.message },
              "dropped a message that is not a CloudEvent",
            );
            return;
          }
          handler({ eventType, body }).catch((handlerError: unknown) => {
            this.options.logger.error({ err: handlerError, eventType }, "event handler failed");
          });
        },
      });
      this.subscriptions.push(subscription);
    }
    await connection.flush();
  }

  async publish(event: OutgoingEvent): Promise<void> {
    const message = natsBinding.structured(event);
    this.requireConnection().publish(message.subject, message.data);
  }

  isConnected(): boolean {
    return this.connected && !!this.connection && !this.connection.isClosed();
  }

  async close(): Promise<void> {
    const connection = this.connection;
    if (!connection || connection.isClosed()) return;
    this.connected = false;
    // drain() flushes what was published; while NATS is unreachable it cannot, so close() ends the reconnecting.
    const patience = new AbortController();
    await Promise.race([
      connection.drain().catch(() => undefined),
      setTimeout(5_000, undefined, { signal: patience.signal }).catch(() => undefined),
    ]);
    patience.abort();
    if (!connection.isClosed()) await connection.close();
  }

  private requireConnection(): NatsConnection {
    if (!this.connection) throw new Error("NatsControlPlane.start() was not called");
    return this.connection;
  }
}
