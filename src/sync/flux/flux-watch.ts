import type { KubernetesObject, ListWatch } from "@kubernetes/client-node";
import type { Logger } from "../../shared/logger.js";
import { backoffDelay, type RetryPolicy } from "../../shared/retry.js";
import { Subscribers } from "../subscribers.js";
import type { FluxClient, FluxKind } from "./flux-client.js";

type Listener = (object: unknown) => void;

export interface FluxWatchOptions {
  client: FluxClient;
  logger: Logger;
  /** How long a watch stays open with nobody listening, so that bursts of deployments share it; 60 s. */
  idleCloseMs?: number;
  /** Pauses before restarting a failed watch. */
  restart?: RetryPolicy;
}

const RESTART: RetryPolicy = { attempts: 0, baseDelayMs: 250, maxDelayMs: 5_000 };

/**
 * One list-then-watch per kind and namespace of a Flux cluster, shared by every in-flight deployment on it: one
 * list and one long watch request however many deployments wait, instead of one read per deployment per interval.
 * It is open while anybody listens (and `idleCloseMs` after), restarts with backoff when it fails, and says
 * whether it is up, so the watchers read their objects often only while it is down. A version it brings only
 * wakes a watcher up with the object; the done rules are the same as for a read.
 */
export class FluxWatch {
  private readonly watches = new Map<string, KindWatch>();
  private closed = false;

  constructor(private readonly options: FluxWatchOptions) {}

  /** Calls `listener` with every version of the object the watch brings, until the returned function is called. */
  subscribe(kind: FluxKind, namespace: string, name: string, listener: Listener): () => void {
    return this.watchOf(kind, namespace).subscribe(name, listener);
  }

  /** True while the watch of that kind and namespace is listed and watching. */
  connected(kind: FluxKind, namespace: string): boolean {
    return this.watches.get(`${kind}/${namespace}`)?.connected === true;
  }

  /** The object as the watch last saw it, while it is up; undefined otherwise. */
  cached(kind: FluxKind, namespace: string, name: string): unknown {
    return this.watches.get(`${kind}/${namespace}`)?.cached(name);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.watches.values()].map((watch) => watch.stop()));
  }

  private watchOf(kind: FluxKind, namespace: string): KindWatch {
    const key = `${kind}/${namespace}`;
    let watch = this.watches.get(key);
    if (!watch) {
      watch = new KindWatch(kind, namespace, this.options, () => this.closed);
      this.watches.set(key, watch);
    }
    return watch;
  }
}

/** The watch of one kind in one namespace, over client-node's `ListWatch` (through FluxClient). */
class KindWatch {
  connected = false;
  private readonly listeners: Subscribers<unknown>;
  private informer: ListWatch<KubernetesObject> | undefined;
  private failures = 0;
  private restartTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly kind: FluxKind,
    private readonly namespace: string,
    private readonly options: FluxWatchOptions,
    private readonly closed: () => boolean,
  ) {
    this.listeners = new Subscribers<unknown>({
      onFirst: () => {
        if (!this.informer && !this.closed()) this.start();
      },
      onIdle: () => void this.stop(),
      idleMs: options.idleCloseMs ?? 60_000,
    });
  }

  subscribe(name: string, listener: Listener): () => void {
    return this.listeners.subscribe(name, listener);
  }

  cached(name: string): unknown {
    return this.connected ? this.informer?.get(name, this.namespace) : undefined;
  }

  async stop(): Promise<void> {
    clearTimeout(this.restartTimer);
    this.listeners.close();
    this.connected = false;
    const informer = this.informer;
    this.informer = undefined;
    await informer?.stop();
  }

  private start(): void {
    const informer = (this.informer = this.options.client.listWatch(this.kind, this.namespace));
    const deliver = (object: KubernetesObject) => this.listeners.deliver(object.metadata?.name ?? "", object);
    informer.on("add", deliver);
    informer.on("update", deliver);
    informer.on("error", (error: unknown) => this.failed(informer, error));
    void this.run(informer);
  }

  private async run(informer: ListWatch<KubernetesObject>): Promise<void> {
    let failed = false;
    const onError = () => (failed = true);
    informer.on("error", onError);
    await informer.start().catch((error: unknown) => this.failed(informer, error));
    informer.off("error", onError);
    // start() resolves once the list is in and the watch request has answered; an error stops it instead.
    if (!failed && this.informer === informer) {
      this.connected = true;
      this.failures = 0;
    }
  }

  private failed(informer: ListWatch<KubernetesObject>, error: unknown): void {
    if (this.informer !== informer) return;
    this.connected = false;
    this.failures++;
    const delay = backoffDelay(this.options.restart ?? RESTART, this.failures);
    this.options.logger.warn(
      { kind: this.kind, namespace: this.namespace, reason: (error as Error)?.message, retryInMs: delay },
      "Flux watch failed; deployments read their objects one by one until it is back",
    );
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (this.informer === informer && !this.closed()) void this.run(informer);
    }, delay);
    this.restartTimer.unref();
  }
}
