import type { Logger } from "../../shared/logger.js";
import type { Application } from "./application-schema.js";
import type { ArgoCdClient } from "./argocd-client.js";
import type { ArgoCdStream } from "./argocd-stream.js";

type Listener = (app: Application) => void;

/**
 * Polling shared by every in-flight deployment on one Argo CD server: one `GET /api/v1/applications` per
 * interval, whatever the number of deployments, handed to each waiting deployment like a stream frame. It pauses
 * while the watch stream is connected (the stream already brings every change).
 */
export class ArgoCdPollSchedule {
  private readonly listeners = new Map<string, Set<Listener>>();
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
  ) {}

  /** True while the last list read succeeded: the waiting deployments may then poll only as a safety net. */
  get delivering(): boolean {
    return this.lastReadOk && this.timer !== undefined;
  }

  subscribe(name: string, listener: Listener): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(listener);
    if (!this.timer) {
      this.timer = setInterval(() => void this.tick(), this.options.intervalMs);
      this.timer.unref();
    }
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(name);
      if (this.listeners.size === 0) this.stop();
    };
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
        for (const listener of (name && this.listeners.get(name)) || []) listener(app);
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
