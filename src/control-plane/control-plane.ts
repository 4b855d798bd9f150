/**
 * The port between the service and the Keptn control plane. The NATS adapter (in-cluster) implements it now; the
 * Keptn API adapter (uniform registration, heartbeat, polling `/controlPlane/v1/event/triggered`, log forwarding)
 * will implement the same interface, so nothing above this folder knows which one runs.
 */

/** One delivery from the control plane: the decoded JSON body, before any validation. */
export interface Delivery {
  /** The event type it was delivered for (the NATS subject, or the polled type). */
  eventType: string;
  body: unknown;
}

/**
 * Takes one delivery. Resolves once the event is accepted (recorded, when the service records its tasks): the
 * adapter then acknowledges it, while the work goes on. Rejects when it could not be accepted: an adapter that can
 * (JetStream) has it delivered again.
 */
export type DeliveryHandler = (delivery: Delivery) => Promise<void>;

/** A Keptn event ready to be sent (a structured CloudEvent as a plain JSON object). */
export interface OutgoingEvent {
  type: string;
  [attribute: string]: unknown;
}

export interface ControlPlane {
  /** Connects; resolves once the first connection is up. */
  start(): Promise<void>;
  /**
   * Delivers events of these exact types to `handler`. Replicas of one integration share the work (a queue group,
   * or one durable JetStream consumer).
   */
  subscribe(eventTypes: string[], handler: DeliveryHandler): Promise<void>;
  publish(event: OutgoingEvent): Promise<void>;
  /** True while events can flow (for `/readyz`). */
  isConnected(): boolean;
  /** Stops taking new events, flushes what was published, disconnects. */
  close(): Promise<void>;
}
