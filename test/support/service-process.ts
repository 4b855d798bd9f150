import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { waitFor } from "./wait.js";

/** Every service process started and not yet exited; killed when the test process exits. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/**
 * The service as a child process (`node --import tsx src/main.ts serve --config <file>`), so that a test can kill
 * it with SIGKILL at any point and start it again on the same configuration, cache and task store.
 */
export class ServiceProcess {
  readonly lines: string[] = [];
  private child: ChildProcess | undefined;
  private exited: Promise<number | null> = Promise.resolve(null);

  private constructor(
    private readonly configFile: string,
    private readonly env: Record<string, string>,
    private readonly entry: string[],
  ) {}

  /** Writes the configuration into `dir` and starts the service; resolves once it logged that it started. */
  static async start(
    dir: string,
    setup: { text: string; env: Record<string, string> },
    extraEnv: Record<string, string> = {},
    /** How node runs the service: the TypeScript sources through tsx, or a build (`["dist/src/main.js"]`). */
    entry: string[] = ["--import", "tsx", "src/main.ts"],
  ): Promise<ServiceProcess> {
    const configFile = join(dir, `service-${Math.random().toString(36).slice(2)}.yaml`);
    await writeFile(configFile, setup.text);
    const service = new ServiceProcess(configFile, { ...setup.env, ...extraEnv }, entry);
    await service.restart();
    return service;
  }

  /** Starts it (again); resolves once it logged "keptn-gitops-service started". */
  async restart(): Promise<void> {
    const from = this.lines.length;
    const child = spawn(process.execPath, [...this.entry, "serve", "--config", this.configFile], {
      env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "/tmp", ...this.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    running.add(child);
    this.child = child;
    this.exited = new Promise((resolve) =>
      child.once("exit", (code) => {
        running.delete(child);
        resolve(code);
      }),
    );
    const collect = (chunk: Buffer) => this.lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    child.stdout!.on("data", collect);
    child.stderr!.on("data", collect);
    await waitFor(
      () => this.lines.slice(from).some((line) => line.includes('"msg":"keptn-gitops-service started"')),
      {
        timeoutMs: 30_000,
        what: `the service to start (output so far: ${this.lines.slice(-5).join(" | ")})`,
      },
    );
  }

  /** Resolves when a log line after `from` contains `text`; answers the line. */
  async logged(text: string, from = 0, timeoutMs = 20_000): Promise<string> {
    return waitFor(() => this.lines.slice(from).find((line) => line.includes(text)), {
      timeoutMs,
      what: `a log line with "${text}"`,
    });
  }

  /** The process id of the running service (undefined before the first start). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Whether the process runs (it may have exited on its own, e.g. out of heap). */
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGKILL: no stop, no hand-over, nothing flushed. */
  async kill(): Promise<void> {
    this.child?.kill("SIGKILL");
    await this.exited;
  }

  /** SIGTERM, and the exit code. */
  async terminate(): Promise<number | null> {
    this.child?.kill("SIGTERM");
    return this.exited;
  }
}
