/**
 * What arrived for one waiting deployment between two reads: the newest version of its object from a watch
 * stream (older ones are superseded), or just a poke from a notification. Either ends the current pause.
 */
export class News<T> {
  private latest: T | undefined;
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

  /** The pause before the next read: `baseMs`, or the follow-up interval shortly after a poke. */
  interval(baseMs: number): number {
    return Date.now() < this.followUpUntil ? Math.min(baseMs, this.followUp.everyMs) : baseMs;
  }

  /** A version of the object; the next read uses it instead of asking the API. */
  push(version: T): void {
    this.latest = version;
    this.waiting?.abort();
  }

  /** Something may have changed: read the API now, and again shortly after. */
  poke(): void {
    this.followUpUntil = Date.now() + this.followUp.forMs;
    this.waiting?.abort();
  }

  pending(): boolean {
    return this.latest !== undefined;
  }

  /** A signal for the next pause; it fires on the next push or poke. */
  wake(): AbortSignal {
    this.waiting = new AbortController();
    return this.waiting.signal;
  }

  /** The newest version since the last take, if any. */
  take(): T | undefined {
    const version = this.latest;
    this.latest = undefined;
    return version;
  }
}
