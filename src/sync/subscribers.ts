/**
 * The deployments listening to a shared source of object versions (a watch stream, a list-and-watch, a list
 * schedule), by object name. The source starts when the first one subscribes (`onFirst`) and stops `idleMs` after
 * the last one left (`onIdle`), so that a burst of deployments shares one connection.
 */
export class Subscribers<T> {
  private readonly byName = new Map<string, Set<(version: T) => void>>();
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly hooks: {
      /** A subscriber arrived while the source may be stopped: start it unless it runs. */
      onFirst: () => void;
      /** Nobody has listened for `idleMs`: stop the source. */
      onIdle: () => void;
      idleMs: number;
    },
  ) {}

  get size(): number {
    return this.byName.size;
  }

  /** Calls `listener` with every version of object `name` delivered, until the returned function is called. */
  subscribe(name: string, listener: (version: T) => void): () => void {
    let set = this.byName.get(name);
    if (!set) this.byName.set(name, (set = new Set()));
    set.add(listener);
    clearTimeout(this.idleTimer);
    this.hooks.onFirst();
    return () => {
      set.delete(listener);
      if (set.size === 0) this.byName.delete(name);
      if (this.byName.size > 0) return;
      clearTimeout(this.idleTimer);
      this.idleTimer = setTimeout(() => {
        if (this.byName.size === 0) this.hooks.onIdle();
      }, this.hooks.idleMs);
      this.idleTimer.unref();
    };
  }

  deliver(name: string, version: T): void {
    for (const listener of this.byName.get(name) ?? []) listener(version);
  }

  /** No idle stop is pending any more (the source is being closed anyway). */
  close(): void {
    clearTimeout(this.idleTimer);
  }
}
