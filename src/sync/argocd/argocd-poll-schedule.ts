import type { Logger } from "../../shared/logger.js";
import { Subscribers } from "../subscribers.js";
import type { Application } from "./application-schema.js";
import type { ArgoCdClient } from "./argocd-client.js";
import type { ArgoCdStream } from "./argocd-stream.js";

/**
 * Polling shared by every in-flight deployment on one Argo CD server: one `GET /api/v1/applications` per
 * interval, whatever the number of deployments, handed to each waiting deployment like a stream frame. It pauses
 * while the watch stream is connected (the stream already brings every change).
 */
export class ArgoCdPollSchedule {
  private readonly listeners: Subscribers<Application>;
  private timer: NodeJS.Timeout | undefined;
  private reading = false;
  private lastReadOk = false;

  constructor(
    private readonly options: {
      client: ArgoCdClient;
      intervalMs: number;
      stream?: ArgoCdStream;
      logger: Logger;
    },
  ) {
    this.listeners = new Subscribers<Application>({
      onFirst: () => {
        if (this.timer) return;
        this.timer = setInterval(() => void this.tick(), this.options.intervalMs);
        this.timer.unref();
      },
      onIdle: () => this.stop(),
      idleMs: 0,
    });
  }

  /** True while the last list read succeeded: the waiting deployments may then poll only as a safety net. */
  get delivering(): boolean {
    return this.lastReadOk && this.timer !== undefined;
  }

  subscribe(name: string, listener: (app: Application) => void): () => void {
    return this.listeners.subscribe(name, listener);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.lastReadOk = false;
  }

  private async tick(): Promise<void> {
    if (this.reading || this.options.stream?.connected) return;
    this.reading = true;
    try {
      const apps = await this.options.client.listApplications();
      this.lastReadOk = true;
      for (const app of apps) {
        const name = app.metadata?.name;
        if (name) this.listeners.deliver(name, app);
      }
    } catch (error) {
      // Each deployment then falls back to reading its own application every pollInterval.
      this.lastReadOk = false;
      this.options.logger.warn(
        { reason: (error as Error).message },
        "Argo CD application list failed; deployments read their applications one by one",
      );
    } finally {
      this.reading = false;
    }
  }
}
