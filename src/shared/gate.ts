/**
 * At most `limit` holders at a time; the others wait in arrival order. `enter()` resolves with the function that
 * lets the next one in (calling it twice lets in one only).
 */
export class Gate {
  private inside = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly limit: number) {}

  async enter(): Promise<() => void> {
    if (this.inside >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.inside++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const next = this.waiting.shift();
      // the place is handed to the next one in line, or freed
      if (next) next();
      else this.inside--;
    };
  }
}
