/**
 * What arrived for one waiting deployment between two reads: the newest version of its object from a watch
 * stream (older ones are superseded), or just a poke from a notification. Either ends the current pause.
 */
export class News<T> {
  private latest: T | undefined;
  private waiting: AbortController | undefined;

  /** A version of the object; the next read uses it instead of asking the API. */
  push(version: T): void {
    this.latest = version;
    this.waiting?.abort();
  }

  /** Something may have changed: read the API now. */
  poke(): void {
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
