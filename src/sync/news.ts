/**
 * Ends one pause early. The pause hands it the function that ends it (`onFire`); when the news came first, that
 * function is called at once. A plain object, not an AbortController: thousands of deployments pause at once,
 * each many times, and an abort signal costs about 1 KiB and listeners.
 */
export class Wake {
  private done = false;
  private end: (() => void) | undefined;

  get fired(): boolean {
    return this.done;
  }

  fire(): void {
    if (this.done) return;
    this.done = true;
    const end = this.end;
    this.end = undefined;
    end?.();
  }

  onFire(end: () => void): void {
    if (this.done) end();
    else this.end = end;
  }

  /** The pause is over: forget its function. */
  clear(): void {
    this.end = undefined;
  }
}

/**
 * What arrived for one waiting deployment between two reads: the newest version of its object from a watch
 * stream (older ones are superseded), or just a poke from a notification. Either ends the current pause.
 */
export class News<T> {
  private latest: T | undefined;
  private poked = false;
  private waiting: Wake | undefined;
  private followUpUntil = 0;

  /**
   * @param followUp after a poke, read every `everyMs` for `forMs`: notifications come early (Argo CD's
   *   on-sync-succeeded while the app is still OutOfSync; Flux's Ready before lastAppliedRevision moves), and the
   *   state they announce shows in the API a moment later, with no second notification.
   */
  constructor(
    private readonly followUp: { everyMs: number; forMs: number } = { everyMs: 1_000, forMs: 30_000 },
  ) {}

  /** A version of the object; the next read uses it instead of asking the API. */
  push(version: T): void {
    this.latest = version;
    this.waiting?.fire();
  }

  /** Something may have changed: read the API now, and again shortly after. */
  poke(): void {
    this.followUpUntil = Date.now() + this.followUp.forMs;
    this.poked = true;
    this.waiting?.fire();
  }

  /**
   * The next pause and the signal that ends it early (the next push or poke). The pause is zero when something
   * arrived since the last one: a version, or a poke that came while the watcher was reading rather than pausing
   * (it would otherwise wait for the next poll). Shortly after a poke it is the follow-up interval, else `baseMs`.
   */
  nextPause(baseMs: number): { ms: number; wake: Wake } {
    const pending = this.latest !== undefined || this.poked;
    this.poked = false;
    this.waiting = new Wake();
    const ms = pending
      ? 0
      : Date.now() < this.followUpUntil
        ? Math.min(baseMs, this.followUp.everyMs)
        : baseMs;
    return { ms, wake: this.waiting };
  }

  /** True shortly after a poke: a read now must ask the API, not use a version seen before the notification. */
  followingUp(): boolean {
    return Date.now() < this.followUpUntil;
  }

  /** The newest version since the last take, if any. */
  take(): T | undefined {
    const version = this.latest;
    this.latest = undefined;
    return version;
  }
}
