import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export interface LabProcessOptions {
  name: string;
  command: string;
  args: string[];
  /** The lab run's directory; output goes to `<dir>/<name>.log`. */
  dir: string;
  env?: NodeJS.ProcessEnv;
  /** Resolves true once the process serves; polled every 200 ms. */
  ready: () => Promise<boolean>;
  readyTimeoutMs?: number;
}

/** One component of the lab as a child process: started, waited for until ready, stopped with SIGTERM. */
export class LabProcess {
  private exitCode: number | null | undefined;
  private readonly exited: Promise<void>;
  private readonly log: WriteStream;
  private tail = "";

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    readonly logFile: string,
  ) {
    this.log = createWriteStream(logFile);
    const keep = (chunk: Buffer) => {
      this.log.write(chunk);
      this.tail = (this.tail + chunk.toString()).slice(-4000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    this.exited = new Promise((resolve) =>
      child.once("exit", (code) => {
        this.exitCode = code;
        running.delete(child);
        resolve();
      }),
    );
  }

  static async start(options: LabProcessOptions): Promise<LabProcess> {
    const child = spawn(options.command, options.args, {
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    running.add(child);
    const labProcess = new LabProcess(options.name, child, join(options.dir, `${options.name}.log`));
    const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
    for (;;) {
      if (labProcess.exitCode !== undefined) {
        throw new Error(
          `${options.name} exited with ${labProcess.exitCode} before it was ready:\n${labProcess.tail}`,
        );
      }
      if (await options.ready().catch(() => false)) return labProcess;
      if (Date.now() > deadline) {
        await labProcess.stop();
        throw new Error(
          `${options.name} was not ready within ${options.readyTimeoutMs ?? 60_000}ms:\n${labProcess.tail}`,
        );
      }
      await delay(200);
    }
  }

  /** The last lines it printed, for error messages. */
  get output(): string {
    return this.tail;
  }

  async stop(): Promise<void> {
    if (this.exitCode === undefined) {
      this.child.kill("SIGTERM");
      const killed = delay(10_000).then(() => this.child.kill("SIGKILL"));
      await Promise.race([this.exited, killed]);
      await this.exited;
    }
    await new Promise<void>((resolve) => this.log.end(() => resolve()));
  }
}
