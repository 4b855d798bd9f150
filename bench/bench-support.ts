// What both benchmarks share: statistics, arrivals stamped with the clock, the machine header, table rows.
import { execFile } from "node:child_process";
import { cpus, loadavg, platform, release, totalmem } from "node:os";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { NatsConnection, Subscription } from "nats";
import { natsServerBinary } from "../test/support/nats-server.js";

/** How long the bench waits for any one thing before it gives up with an error. */
export const WAIT_MS = 15_000;

// ---- statistics -------------------------------------------------------------------------------------------

export interface Summary {
  n: number;
  median: number;
  p90: number;
  min: number;
  max: number;
}

/** Median (mean of the two middle samples when n is even), p90 by nearest rank, min, max. */
export function summarize(samples: number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (i: number) => {
    const value = sorted[i];
    if (value === undefined) throw new Error(`no sample at index ${i} of ${sorted.length}`);
    return value;
  };
  const n = sorted.length;
  const mid = Math.floor(n / 2);
  return {
    n,
    median: n % 2 === 1 ? at(mid) : (at(mid - 1) + at(mid)) / 2,
    p90: at(Math.ceil(0.9 * n) - 1),
    min: at(0),
    max: at(n - 1),
  };
}

// ---- arrivals, stamped when they arrive -------------------------------------------------------------------

export interface Arrival<T> {
  /** performance.now() when it arrived */
  at: number;
  value: T;
}

/** Things that arrive under a key; `wait` resolves with one that already arrived or arrives later. */
export class Arrivals<T> {
  private readonly seen = new Map<string, Arrival<T>>();
  private readonly waiting = new Map<string, (arrival: Arrival<T>) => void>();

  add(key: string, at: number, value: T): void {
    if (this.seen.has(key)) return;
    const arrival = { at, value };
    this.seen.set(key, arrival);
    this.waiting.get(key)?.(arrival);
    this.waiting.delete(key);
  }

  wait(key: string, what: string): Promise<Arrival<T>> {
    const seen = this.seen.get(key);
    if (seen) return Promise.resolve(seen);
    let timer: NodeJS.Timeout | undefined;
    return new Promise<Arrival<T>>((resolve, reject) => {
      timer = setTimeout(() => {
        this.waiting.delete(key);
        reject(new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`));
      }, WAIT_MS);
      this.waiting.set(key, resolve);
    }).finally(() => clearTimeout(timer));
  }
}

/** Subscribes on `nc` and stamps each message with performance.now() before anything else is done with it. */
export function stamp(
  nc: NatsConnection,
  subject: string,
  onMessage: (at: number, subject: string, data: Uint8Array) => void,
): Subscription {
  return nc.subscribe(subject, {
    callback: (error, msg) => {
      const at = performance.now();
      if (!error) onMessage(at, msg.subject, msg.data);
    },
  });
}

const execFileText = async (file: string, args: string[]) =>
  (await promisify(execFile)(file, args)).stdout.trim();

/** The commit the bench runs from, and whether the working tree differs from it. */
async function sourceVersion(): Promise<string> {
  const root = fileURLToPath(new URL("..", import.meta.url));
  try {
    const commit = await execFileText("git", ["-C", root, "rev-parse", "--short", "HEAD"]);
    const dirty = (await execFileText("git", ["-C", root, "status", "--porcelain"])) !== "";
    return `commit ${commit}${dirty ? " with uncommitted changes" : ""}`;
  } catch {
    return "unknown (not a git checkout)";
  }
}

export async function machine(): Promise<string[]> {
  const cores = cpus();
  const gitVersion = await execFileText("git", ["--version"]);
  const natsVersion = await execFileText(natsServerBinary(), ["--version"]);
  const source = await sourceVersion();
  const load = loadavg()
    .map((average) => average.toFixed(2))
    .join(" ");
  return [
    `date       ${new Date().toISOString()}`,
    `machine    ${cores[0]?.model ?? "unknown cpu"}, ${cores.length} cores, ` +
      `${(totalmem() / 2 ** 30).toFixed(1)} GiB, ${platform()} ${release()}`,
    `load       ${load} (1, 5, 15 min averages before the run; other work on the machine shows here)`,
    `versions   node ${process.version}, ${gitVersion}, ${natsVersion}`,
    `source     ${source}`,
  ];
}

export const ms = (value: number) => `${value.toFixed(2)} ms`.padStart(10);
export const LABEL = 70;

export function row(label: string, samples: number[]): string {
  const s = summarize(samples);
  return `${label.padEnd(LABEL)}${String(s.n).padStart(4)}${ms(s.median)}${ms(s.p90)}${ms(s.min)}${ms(s.max)}`;
}

export function ratio(measured: number[], baseline: number[]): string {
  const value = summarize(measured).median / summarize(baseline).median;
  return `${"    ratio of the medians".padEnd(LABEL)}${"".padStart(4)}${`x${value.toFixed(2)}`.padStart(10)}`;
}
