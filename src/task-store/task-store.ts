import { z } from "zod";

/**
 * The port for the state of the tasks in flight: one record per triggered event, so that a task survives a crash
 * of the service, is answered exactly once, and is owned by one replica at a time. Adapters: a JetStream
 * key-value bucket (several replicas, clustered NATS) and a directory of files (one replica, no JetStream).
 */

/**
 * Where a task is:
 * - `accepted`: recorded; `.started` may not have been sent yet.
 * - `started`: `.started` was sent; the handler runs (or must run again after a crash).
 * - `finishing`: the answer is known (`finish`) and `.finished` may not have been sent yet.
 * - `done`: `.finished` was sent. Kept for `doneRetention`, so that a redelivery of the event is recognised.
 */
export type TaskPhase = "accepted" | "started" | "finishing" | "done";

const PHASES = ["accepted", "started", "finishing", "done"] as const satisfies readonly TaskPhase[];

/**
 * A stored record as the stores read it back: only the fields a store relies on (its key, what `unfinished` and
 * `sweep` look at) are checked; the rest is kept as written.
 */
export const storedRecordSchema = z.looseObject({
  id: z.string(),
  phase: z.enum(PHASES),
  doneAt: z.number().optional(),
});

const heartbeatSchema = z.object({ replica: z.string(), until: z.number() });

/** A replica's heartbeat as the stores write it (`{"replica":..,"until":..}`); undefined when it is not one. */
export function parseHeartbeat(text: string): { replica: string; until: number } | undefined {
  try {
    const beat = heartbeatSchema.safeParse(JSON.parse(text));
    return beat.success ? beat.data : undefined;
  } catch {
    return undefined;
  }
}

export interface StoredFinish {
  status: "succeeded" | "errored";
  result: "pass" | "warning" | "fail";
  message: string;
  taskData?: Record<string, unknown>;
}

export interface TaskRecord {
  /** The triggered event's `id`: the record's key. Any string; adapters encode it as they must. */
  id: string;
  /** The task (`deployment`). */
  task: string;
  /** The triggered event as it was received (the decoded JSON body, before validation). */
  event: unknown;
  phase: TaskPhase;
  /** Epoch ms when the event was received. */
  receivedAt: number;
  /** Epoch ms by which the task must be answered; fixed at receipt, so it keeps counting across restarts. */
  deadline: number;
  /** Task data known so far (for example the pushed `gitCommit`), as the handler reported it. */
  taskData: Record<string, unknown>;
  /** Set in phase `finishing` and `done`: the answer. */
  finish?: StoredFinish;
  /** Epoch ms when `.finished` was sent (phase `done`). */
  doneAt?: number;
  /**
   * The replica that works on the task. It holds the task while its heartbeat (`TaskStore.beat`) is fresh: one
   * lease per replica, not per task, so that a replica with 10,000 tasks in flight writes one key per renewal.
   */
  owner?: string;
}

/** A record with the revision it was read or written at: the next update must name that revision. */
export interface StoredTask {
  record: TaskRecord;
  revision: number;
}

export type CreateOutcome = { created: true; revision: number } | { created: false; existing: StoredTask };

/** The record changed since it was read (another replica, or a later write of this one). */
export class RevisionConflictError extends Error {
  override name = "RevisionConflictError";
  constructor(
    readonly id: string,
    readonly expected: number,
    options?: { cause?: unknown },
  ) {
    super(`the record of task ${id} is no longer at revision ${expected}`, options);
  }
}

/** The store could not be read or written (NATS down, disk full); the caller may try again. */
export class TaskStoreUnavailableError extends Error {
  override name = "TaskStoreUnavailableError";
}

export interface TaskStore {
  /** A line for the start-up log: which store, where, and what it can do (e.g. "single replica only"). */
  readonly description: string;
  /** Creates what the store needs (the bucket, the directory). Idempotent. */
  open(): Promise<void>;
  /** Creates the record unless one with its id exists; then answers the existing one (a redelivery). */
  create(record: TaskRecord): Promise<CreateOutcome>;
  get(id: string): Promise<StoredTask | undefined>;
  /**
   * Writes the record if the stored one is still at `revision` (compare-and-set); answers the new revision.
   * Throws RevisionConflictError otherwise, and when the record is gone.
   */
  update(record: TaskRecord, revision: number): Promise<number>;
  /** Every record that is not `done`. */
  unfinished(): Promise<StoredTask[]>;
  /**
   * Deletes `done` records whose `doneAt` is before `before` (epoch ms), and heartbeats that ended before it;
   * answers how many records.
   */
  sweep(before: number): Promise<number>;
  /** Writes the heartbeat of a replica: it holds the tasks it owns until `until` (epoch ms); 0 lets them go now. */
  beat(replica: string, until: number): Promise<void>;
  /** The heartbeat of every replica that wrote one and was not swept: replica -> until (epoch ms). */
  beats(): Promise<Map<string, number>>;
  close(): Promise<void>;
}
