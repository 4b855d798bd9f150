import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { RecordedCall } from "../e2e/argocd-backend.js";

/**
 * A reverse proxy in front of a real HTTP API (the lab's argocd-server) that records every call and can make
 * the next calls fail, so that the scenarios assert on the same calls whether the simulator or the real tool
 * answers. Bodies and streams (server-sent events) pass through unchanged.
 */
export class RecordingProxy {
  readonly requests: RecordedCall[] = [];
  private failures: Array<number> = [];

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(target: string): Promise<RecordingProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const proxy = new RecordingProxy(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    server.on("request", (req, res) => proxy.handle(new URL(target), req, res));
    return proxy;
  }

  /** The next `count` calls answer `status` with an Argo CD style error body, without reaching the target. */
  injectFailures(count: number, status = 503): void {
    for (let i = 0; i < count; i++) this.failures.push(status);
  }

  private handle(target: URL, req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      const url = new URL(req.url ?? "/", this.url);
      const call: RecordedCall = {
        method: req.method ?? "GET",
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
      };
      if (raw.length > 0) {
        try {
          call.body = JSON.parse(raw.toString("utf8"));
        } catch {
          call.body = raw.toString("utf8");
        }
      }
      this.requests.push(call);
      const failure = this.failures.shift();
      if (failure !== undefined) {
        res.writeHead(failure, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            code: 14,
            error: "injected by the test",
            message: "injected by the test",
          }),
        );
        return;
      }
      const upstream = request(
        {
          host: target.hostname,
          port: target.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: target.host },
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on("error", (error) => {
        if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
        res.end(`proxy: ${error.message}`);
      });
      upstream.end(raw);
    });
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
