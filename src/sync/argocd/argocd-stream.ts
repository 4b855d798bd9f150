import type { Logger } from "../../shared/logger.js";
import { Subscribers } from "../subscribers.js";
import { applicationSchema, type Application } from "./application-schema.js";

export interface ArgoCdStreamOptions {
  baseUrl: string;
  token: string;
  logger: Logger;
  /** Injected so tests need no global HTTP patching. */
  fetch?: typeof globalThis.fetch;
  /** First pause before reconnecting; doubles up to `maxReconnectDelayMs`. */
  reconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  /** How long the stream stays open with nobody listening, so that bursts of deployments share it; 60 s. */
  idleCloseMs?: number;
}

/**
 * One `GET /api/v1/stream/applications` per Argo CD server, shared by every in-flight deployment on it
 * (interfaces.md A1 "watch"). It is open while anybody listens, reconnects with backoff when it drops, and says
 * whether it is up, so the watchers poll often only while it is down. A frame only wakes a watcher up with the
 * application it carries; the done rules are the same as for a polled read.
 */
export class ArgoCdStream {
  private readonly listeners: Subscribers<Application>;
  private controller: AbortController | undefined;
  private running: Promise<void> | undefined;
  private up = false;
  private closed = false;

  constructor(private readonly options: ArgoCdStreamOptions) {
    this.listeners = new Subscribers<Application>({
      onFirst: () => {
        if (!this.running && !this.closed) this.running = this.run();
      },
      onIdle: () => this.controller?.abort(),
      idleMs: options.idleCloseMs ?? 60_000,
    });
  }

  /** True while the stream is connected and has answered 200. */
  get connected(): boolean {
    return this.up;
  }

  /** Calls `listener` with every version of application `name` the stream brings, until the returned function is called. */
  subscribe(name: string, listener: (app: Application) => void): () => void {
    return this.listeners.subscribe(name, listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listeners.close();
    this.controller?.abort();
    await this.running;
  }

  private async run(): Promise<void> {
    const fetch = this.options.fetch ?? globalThis.fetch;
    const base = this.options.reconnectDelayMs ?? 250;
    const max = this.options.maxReconnectDelayMs ?? 5_000;
    let delay = base;
    try {
      while (!this.closed && this.listeners.size > 0) {
        this.controller = new AbortController();
        const signal = this.controller.signal;
        try {
          const response = await fetch(new URL("/api/v1/stream/applications", this.options.baseUrl), {
            headers: { authorization: `Bearer ${this.options.token}`, accept: "text/event-stream" },
            signal,
          });
          if (!response.ok || !response.body) throw new Error(`answered ${response.status}`);
          this.up = true;
          delay = base;
          this.options.logger.debug({ server: this.options.baseUrl }, "Argo CD watch stream connected");
          await this.read(response.body);
          throw new Error("the stream ended");
        } catch (error) {
          this.up = false;
          if (this.closed || this.listeners.size === 0) return;
          this.options.logger.warn(
            { server: this.options.baseUrl, reason: (error as Error).message, retryInMs: delay },
            "Argo CD watch stream is down; polling until it is back",
          );
          await new Promise((resolve) => setTimeout(resolve, delay));
          delay = Math.min(delay * 2, max);
        }
      }
    } finally {
      this.up = false;
      this.running = undefined;
    }
  }

  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) return;
      buffered += chunk.value;
      let end: number;
      while ((end = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, end).trim();
        buffered = buffered.slice(end + 1);
        // SSE framing (`data: {...}`) or newline-delimited JSON; keepalive comments (`:`) and blank lines skip.
        const json = line.startsWith("data:") ? line.slice(5).trim() : line.startsWith("{") ? line : "";
        if (json) this.dispatch(json);
      }
    }
  }

  private dispatch(json: string): void {
    let frame: { result?: { type?: string; application?: unknown } };
    try {
      frame = JSON.parse(json) as typeof frame;
    } catch {
      return; // a frame cut by a reconnect; the next one carries the whole application again
    }
    if (frame.result?.type === "DELETED") return;
    const parsed = applicationSchema.safeParse(frame.result?.application);
    const name = parsed.success ? parsed.data.metadata?.name : undefined;
    if (!parsed.success || !name) return;
    this.listeners.deliver(name, parsed.data);
  }
}
