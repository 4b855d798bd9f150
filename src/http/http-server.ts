import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import express, { type Express } from "express";

export interface Readiness {
  /** Name of the check and whether it passes, e.g. `nats: true`. */
  checks(): Record<string, boolean>;
}

/** The service's HTTP surface: liveness and readiness now; webhooks and metrics hang off the same app later. */
export function buildHttpApp(readiness: Readiness): Express {
  const app = express();
  app.disable("x-powered-by");
  app.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  app.get("/readyz", (_req, res) => {
    const checks = readiness.checks();
    const ready = Object.values(checks).every(Boolean);
    res.status(ready ? 200 : 503).json({ status: ready ? "ready" : "not ready", checks });
  });
  return app;
}

/** Listens on host:port (0 = a free port) and resolves with the server and its base URL. */
export async function listen(
  app: Express,
  host: string,
  port: number,
): Promise<{ server: Server; url: string }> {
  const server = createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shownHost = host === "0.0.0.0" ? "127.0.0.1" : host;
  return { server, url: `http://${shownHost}:${address.port}` };
}

export async function close(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
