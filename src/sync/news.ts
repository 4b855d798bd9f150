/**
 * What arrived for one waiting deployment between two reads: the newest version of its object from a watch
 * stream (older ones are superseded), or just a poke from a notification. Either ends the current pause.
 */
export class News<T> {
  private latest: T | undefined;
  private poked = false;
  private waiting: AbortController | undefined;
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
    this.waiting?.abort();
  }

  /** Something may have changed: read the API now, and again shortly after. */
  poke(): void {
    this.followUpUntil = Date.now() + this.followUp.forMs;
    this.poked = true;
    this.waiting?.abort();
  }

  /**
   * The next pause and the signal that ends it early (the next push or poke). The pause is zero when something
   * arrived since the last one: a version, or a poke that came while the watcher was reading rather than pausing
   * (it would otherwise wait for the next poll). Shortly after a poke it is the follow-up interval, else `baseMs`.
   */
  nextPause(baseMs: number): { ms: number; wake: AbortSignal } {
    const pending = this.latest !== undefined || this.poked;
    this.poked = false;
    this.waiting = new AbortController();
    const ms = pending
      ? 0
      : Date.now() < this.followUpUntil
        ? Math.min(baseMs, this.followUp.everyMs)
        : baseMs;
    return { ms, wake: this.waiting.signal };
  }

  /** The newest version since the last take, if any. */
  take(): T | undefined {
    const version = this.latest;
    this.latest = undefined;
    return version;
  }
}
