import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants as fsConstants } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface NatsServerOptions {
  /** Start with JetStream (`-js`), storing in `storeDir`. */
  jetstream?: boolean;
  /** JetStream store; a temporary directory (removed by `stop()`) when not given. */
  storeDir?: string;
  /** Fixed port; a free loopback port when not given. */
  port?: number;
}

const READY_TIMEOUT_MS = 10_000;
const EXIT_GRACE_MS = 5_000;
const OUTPUT_LIMIT = 64 * 1024;

/**
 * Every server started and not yet exited. If a test forgets `stop()`, mocha's `--exit` would otherwise leave
 * nats-server processes behind; this set lets one exit hook kill them. It is the only module-level state here.
 */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** A real `nats-server` child process on a loopback port. */
export class NatsServerProcess {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string | undefined;

  private child: ChildProcess | undefined;
  private output = "";
  private stopped = false;

  private constructor(
    port: number,
    private readonly binary: string,
    private readonly jetstream: boolean,
    storeDir: string | undefined,
    private readonly ownsStoreDir: boolean,
  ) {
    this.port = port;
    this.url = `nats://127.0.0.1:${port}`;
    this.storeDir = storeDir;
  }

  static async start(options: NatsServerOptions = {}): Promise<NatsServerProcess> {
    const binary = natsServerBinary();
    const jetstream = options.jetstream ?? false;
    const ownsStoreDir = jetstream && options.storeDir === undefined;
    const storeDir = ownsStoreDir ? await mkdtemp(join(tmpdir(), "nats-js-")) : options.storeDir;

    // A port found free may be taken before nats-server binds it; with a port of our choosing, try another.
    const attempts = options.port === undefined ? 3 : 1;
    let lastError: unknown;
    for (let attempt = 0; attempt < attempts; attempt++) {
      const port = options.port ?? (await freePort());
      const server = new NatsServerProcess(port, binary, jetstream, storeDir, ownsStoreDir);
      try {
        await server.launch();
        return server;
      } catch (error) {
        lastError = error;
        await server.kill();
        if (!server.output.includes("address already in use")) break;
      }
    }
    if (ownsStoreDir && storeDir !== undefined) await rm(storeDir, { recursive: true, force: true });
    throw lastError;
  }

  /** Whether the process is running. */
  get running(): boolean {
    return this.child !== undefined && isAlive(this.child);
  }

  /** What the server printed (stderr and stdout, last 64 KiB), for error messages. */
  get log(): string {
    return this.output;
  }

  /**
   * Sends `signal` (default SIGTERM; SIGKILL simulates a crash) and waits for the process to exit. If it is still
   * alive after 5 s it is killed with SIGKILL. Does nothing when the server is not running.
   */
  async kill(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const child = this.child;
    if (child === undefined || !isAlive(child)) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill(signal);
    const escalate = setTimeout(() => child.kill("SIGKILL"), EXIT_GRACE_MS);
    await exited;
    clearTimeout(escalate);
  }

  /** Kills the server if it runs and starts it again on the same port and store, for outage tests. */
  async restart(): Promise<void> {
    if (this.stopped) throw new Error(`nats-server on port ${this.port} was stopped; start a new one`);
    await this.kill();
    await this.launch();
  }

  /** Kills the server and removes the temporary JetStream store. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.kill();
    if (this.ownsStoreDir && this.storeDir !== undefined) {
      await rm(this.storeDir, { recursive: true, force: true });
    }
  }

  private args(): string[] {
    const args = ["-a", "127.0.0.1", "-p", String(this.port)];
    if (this.jetstream && this.storeDir !== undefined) args.push("-js", "-sd", this.storeDir);
    return args;
  }

  /** Spawns the process and resolves once it logs "Server is ready" (it logs after its listener is open). */
  private launch(): Promise<void> {
    this.output = "";
    const args = this.args();
    const child = spawn(this.binary, args, { stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    running.add(child);
    child.once("exit", () => running.delete(child));

    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (reason: string, cause?: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        child.kill("SIGKILL");
        const command = [this.binary, ...args].join(" ");
        reject(
          new Error(`nats-server did not start (${reason}): ${command}\n--- its output ---\n${this.output}`, {
            cause,
          }),
        );
      };
      const onData = (chunk: Buffer) => {
        this.output = (this.output + chunk.toString("utf8")).slice(-OUTPUT_LIMIT);
        if (!settled && this.output.includes("Server is ready")) {
          settled = true;
          clearTimeout(timer);
          resolve();
        }
      };
      const timer = setTimeout(() => fail(`not ready within ${READY_TIMEOUT_MS} ms`), READY_TIMEOUT_MS);
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      child.once("error", (error) =>
        fail(`could not run it: ${error.message}; set NATS_SERVER_BIN to the nats-server binary`, error),
      );
      child.once("exit", (code, signal) => fail(`exited early with ${signal ?? `code ${code}`}`));
    });
  }
}

/** NATS_SERVER_BIN, else /usr/sbin/nats-server, else `nats-server` from PATH. */
export function natsServerBinary(): string {
  const fromEnv = process.env.NATS_SERVER_BIN;
  if (fromEnv) return fromEnv;
  try {
    accessSync("/usr/sbin/nats-server", fsConstants.X_OK);
    return "/usr/sbin/nats-server";
  } catch {
    return "nats-server";
  }
}

function isAlive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** A loopback port that was free a moment ago: listen on port 0, read the port, close. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : undefined;
      server.close(() =>
        port === undefined ? reject(new Error("could not read the port of a probe listener")) : resolve(port),
      );
    });
  });
}
