import { setTimeout } from "node:timers/promises";
import {
  AckPolicy,
  connect,
  DeliverPolicy,
  nanos,
  type ConsumerMessages,
  type JetStreamManager,
  type JsMsg,
  type NatsConnection,
  type Subscription,
} from "nats";
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
  /**
   * How triggered events arrive: `jetstream` from the control plane's stream through a durable consumer (events
   * sent while the service was down are delivered when it is back), `core` by a queue subscription (at most once),
   * `auto` (default) JetStream when the server has the stream, else core.
   */
  intake?: "auto" | "jetstream" | "core";
  /** The JetStream stream Keptn's shipyard-controller keeps every `sh.keptn.>` event in. */
  stream?: string;
  /** Deliveries of one event at most (the first included); then JetStream gives up on it. */
  maxDeliveries?: number;
  /** How long a delivery may stay unacknowledged before JetStream sends it again. */
  ackWaitMs?: number;
}

const DEFAULT_STREAM = "keptn";

/** A NATS URL as it may be shown: user and password (NATS supports them in the URL) are left out. */
function withoutCredentials(url: string): string {
  return url.replace(/\/\/[^/@]*@/g, "//");
}

/** Keptn over core NATS, the way the in-cluster cp-connector talks to the control plane (protocol.md §1). */
export class NatsControlPlane implements ControlPlane {
  private connection: NatsConnection | undefined;
  private readonly subscriptions: Subscription[] = [];
  private readonly consumers: ConsumerMessages[] = [];
  private connected = false;
  /** True when triggered events come through JetStream (decided by `start()`). */
  private durable = false;
  private manager: Promise<JetStreamManager> | undefined;

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
    this.durable = await this.hasStream();
  }

  /** The connection, once started: the JetStream task store shares it. */
  get natsConnection(): NatsConnection | undefined {
    return this.connection;
  }

  /** Whether the server has JetStream at all (the task store can use a key-value bucket). */
  async hasJetStream(): Promise<boolean> {
    return this.jetStreamManager().then(
      () => true,
      () => false,
    );
  }

  /**
   * The JetStream manager, made once: making one asks the server for the account (and fails without JetStream).
   * A failure is not kept, so that a later call asks again.
   */
  private jetStreamManager(): Promise<JetStreamManager> {
    this.manager ??= this.requireConnection()
      .jetstreamManager()
      .catch((error: unknown) => {
        this.manager = undefined;
        throw error;
      });
    return this.manager;
  }

  /** Whether the server has JetStream and the control plane's stream, as `intake` asks. */
  private async hasStream(): Promise<boolean> {
    const { intake = "auto", logger } = this.options;
    if (intake === "core") {
      logger.info("taking triggered events over core NATS (nats.intake: core): at most once");
      return false;
    }
    const stream = this.options.stream ?? DEFAULT_STREAM;
    try {
      const manager = await this.jetStreamManager();
      await manager.streams.info(stream);
      logger.info({ stream }, "taking triggered events from JetStream through a durable consumer");
      return true;
    } catch (error) {
      const reason = (error as Error).message;
      if (intake === "jetstream") {
        throw new Error(
          `nats.intake is jetstream, but the NATS server has no JetStream stream "${stream}" (${reason}); Keptn's shipyard-controller creates it, or set nats.intake: auto`,
          { cause: error },
        );
      }
      logger.warn(
        { stream, reason },
        "no JetStream stream of the control plane: taking triggered events over core NATS; events sent while the service is down are lost",
      );
      return false;
    }
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
    if (this.durable) {
      for (const eventType of eventTypes) await this.consume(connection, eventType, handler);
      return;
    }
    for (const eventType of eventTypes) {
      const subscription = connection.subscribe(eventType, {
        queue: this.options.queueGroup,
        callback: (error, message) => {
          if (error) {
            this.options.logger.error({ err: error, eventType }, "NATS subscription error");
            return;
          }
          const body = this.decode(message);
          if (body === undefined) return;
          handler({ eventType, body }).catch((handlerError: unknown) => {
            this.options.logger.error({ err: handlerError, eventType }, "event handler failed");
          });
        },
      });
      this.subscriptions.push(subscription);
    }
    await connection.flush();
  }

  /**
   * One durable pull consumer per event type, named after the integration and shared by its replicas. A message is
   * acknowledged once the handler has accepted it (the task is recorded); a handler that could not record it has
   * the message sent again later, up to `maxDeliveries`. A new consumer starts at new events only, never at the
   * stream's history.
   */
  private async consume(
    connection: NatsConnection,
    eventType: string,
    handler: DeliveryHandler,
  ): Promise<void> {
    const stream = this.options.stream ?? DEFAULT_STREAM;
    const durable = consumerName(this.options.queueGroup, eventType);
    const manager = await this.jetStreamManager();
    const config = {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.New,
      filter_subject: eventType,
      max_deliver: this.options.maxDeliveries ?? 10,
      ack_wait: nanos(this.options.ackWaitMs ?? 30_000),
    };
    const existing = await manager.consumers.info(stream, durable).catch(() => undefined);
    if (!existing) await manager.consumers.add(stream, config);
    else
      await manager.consumers.update(stream, durable, {
        ack_wait: config.ack_wait,
        max_deliver: config.max_deliver,
      });
    const consumer = await connection.jetstream().consumers.get(stream, durable);
    const messages = await consumer.consume({ max_messages: 256 });
    this.consumers.push(messages);
    this.options.logger.info({ stream, consumer: durable, eventType }, "consuming from JetStream");
    void (async () => {
      for await (const message of messages) this.deliver(message, eventType, handler);
    })().catch((error: unknown) => {
      this.options.logger.error({ err: error, eventType }, "JetStream consumer stopped");
    });
  }

  private deliver(message: JsMsg, eventType: string, handler: DeliveryHandler): void {
    const body = this.decode(message);
    if (body === undefined) {
      message.term();
      return;
    }
    handler({ eventType, body }).then(
      () => message.ack(),
      (handlerError: unknown) => {
        this.options.logger.error(
          { err: handlerError, eventType, deliveries: message.info.redeliveryCount },
          "could not take an event; JetStream delivers it again",
        );
        message.nak(1_000);
      },
    );
  }

  /** The CloudEvent of a message; undefined (logged) for one that is not a CloudEvent. */
  private decode(message: { subject: string; data: Uint8Array }): unknown {
    try {
      return natsBinding.toEvent({ subject: message.subject, data: message.data });
    } catch (decodeError) {
      if (!(decodeError instanceof NatsBindingError)) throw decodeError;
      this.options.logger.warn(
        { subject: message.subject, reason: decodeError.message },
        "dropped a message that is not a CloudEvent",
      );
      return undefined;
    }
  }

  /**
   * With the control plane's stream, through JetStream with a message id made of the type and the triggered id:
   * the stream keeps one copy of an answer sent twice (by a replica that died after sending it, and the one that
   * carried its task on), and the server's acknowledgement says it was stored. Otherwise a core publish, which the
   * client buffers while it reconnects.
   */
  async publish(event: OutgoingEvent): Promise<void> {
    const message = natsBinding.structured(event);
    const connection = this.requireConnection();
    const triggeredId = event["triggeredid"];
    if (this.durable && typeof triggeredId === "string") {
      await connection.jetstream().publish(message.subject, message.data, {
        msgID: `${event.type}:${triggeredId}`,
        timeout: 10_000,
      });
      return;
    }
    connection.publish(message.subject, message.data);
  }

  isConnected(): boolean {
    return this.connected && !!this.connection && !this.connection.isClosed();
  }

  async close(): Promise<void> {
    const connection = this.connection;
    if (!connection || connection.isClosed()) return;
    this.connected = false;
    for (const messages of this.consumers) await messages.close().catch(() => undefined);
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

/** `gitops-service-deployment-triggered` for `sh.keptn.event.deployment.triggered`: no dots, as JetStream wants. */
export function consumerName(integration: string, eventType: string): string {
  return `${integration}-${eventType.replace(/^sh\.keptn\.event\./, "").replace(/[^A-Za-z0-9_-]+/g, "-")}`;
}
