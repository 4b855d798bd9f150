import type { OutgoingEvent } from "./control-plane.js";

/**
 * A CloudEvents protocol binding for NATS, in the shape the CloudEvents JS SDK gives its bindings (`binary`,
 * `structured`, `toEvent`, `isEvent`) and kept apart from the transport that delivers it. Keptn uses structured
 * mode only: the message body is the whole event as JSON and no NATS headers are set (protocol.md §1).
 */
export interface NatsMessage {
  subject: string;
  data: Uint8Array;
  headers?: Record<string, string>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class NatsBindingError extends Error {
  override name = "NatsBindingError";
}

export const natsBinding = {
  /** Structured mode: the subject is the event type and the body is the JSON event. */
  structured(event: OutgoingEvent): NatsMessage {
    return { subject: event.type, data: encoder.encode(JSON.stringify(event)) };
  },

  /** Binary mode (CloudEvents NATS binding spec): attributes as `ce-` headers, `data` alone in the body. */
  binary(event: OutgoingEvent): NatsMessage {
    const { data, ...attributes } = event;
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(attributes)) {
      if (value !== undefined && value !== null) headers[`ce-${name}`] = String(value);
    }
    return { subject: event.type, data: encoder.encode(JSON.stringify(data ?? null)), headers };
  },

  /** True when the message looks like a structured CloudEvent (a JSON object body). */
  isEvent(message: NatsMessage): boolean {
    const first = message.data.find(
      (byte) => byte !== 0x20 && byte !== 0x0a && byte !== 0x0d && byte !== 0x09,
    );
    return first === 0x7b; // "{"
  },

  /** Decodes the body; throws NatsBindingError when it is not a JSON object. Validation is the caller's job. */
  toEvent(message: NatsMessage): Record<string, unknown> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(decoder.decode(message.data));
    } catch (error) {
      throw new NatsBindingError(`the message on ${message.subject} is not JSON`, { cause: error });
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new NatsBindingError(`the message on ${message.subject} is not a JSON object`);
    }
    return parsed as Record<string, unknown>;
  },
};
