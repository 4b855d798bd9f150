import { expect } from "chai";
import { waitFor } from "./wait.js";

/**
 * Every version of one Argo CD application that `GET /api/v1/stream/applications?name=` sends, in order: the tests'
 * own reader of the watch stream, kept apart from the service's ArgoCdStream on purpose, so that the pins do not
 * depend on the code under test. `T` is the part of an Application a test reads.
 */
export class AppStream<T> {
  readonly frames: T[] = [];
  private buffered = "";

  private constructor(private readonly controller: AbortController) {}

  /** Opens the stream on `argo` (the simulator or the lab's argocd-server) and waits for its first frame. */
  static async open<T>(argo: { url: string; token: string }, name: string): Promise<AppStream<T>> {
    const controller = new AbortController();
    const stream = new AppStream<T>(controller);
    const response = await fetch(`${argo.url}/api/v1/stream/applications?name=${name}`, {
      headers: { authorization: `Bearer ${argo.token}`, accept: "text/event-stream" },
      signal: controller.signal,
    });
    expect(response.status, "the watch stream answers").to.equal(200);
    void stream.read(response.body!.pipeThrough(new TextDecoderStream()).getReader());
    await waitFor(() => stream.frames.length > 0, { timeoutMs: 10_000, what: `the first frame of ${name}` });
    return stream;
  }

  private async read(reader: ReadableStreamDefaultReader<string>): Promise<void> {
    try {
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) return;
        this.buffered += chunk.value;
        let end: number;
        while ((end = this.buffered.indexOf("\n")) >= 0) {
          const line = this.buffered.slice(0, end).trim();
          this.buffered = this.buffered.slice(end + 1);
          const json = line.startsWith("data:") ? line.slice(5).trim() : line.startsWith("{") ? line : "";
          if (!json) continue;
          const frame = JSON.parse(json) as { result?: { application?: T } };
          if (frame.result?.application) this.frames.push(frame.result.application);
        }
      }
    } catch {
      // aborted by close()
    }
  }

  until(what: string, ok: (app: T) => boolean, timeoutMs: number): Promise<T> {
    return waitFor(() => this.frames.find(ok), { timeoutMs, what });
  }

  close(): void {
    this.controller.abort();
  }
}
