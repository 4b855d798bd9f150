import type { Logger } from "../shared/logger.js";
import {
  RevisionConflictError,
  type StoredTask,
  type TaskRecord,
  type TaskStore,
} from "../task-store/task-store.js";

export interface TaskLedgerOptions {
  store: TaskStore;
  /** This process among the replicas (`state.replicaId`): the owner written into the records it holds. */
  replica: string;
  /** How long a lease holds without renewal; renewed every third of it. */
  leaseMs: number;
  logger: Logger;
  /** The clock (epoch ms); tests may move it. */
  now?: () => number;
}

/**
 * A record this replica holds: every write goes through here, one at a time, compare-and-set. The replica's
 * heartbeat (`TaskLedger.beat`) is the lease; a write that finds the record changed means another replica took
 * the task over.
 */
export class HeldTask {
  private revision: number;
  private tail: Promise<void> = Promise.resolve();
  private taken = false;
  /** Called once when the task is found taken over; the connector aborts the task's work with it. */
  onLost: ((error: LeaseLostError) => void) | undefined;

  constructor(
    private current: TaskRecord,
    revision: number,
    private readonly ledger: TaskLedger,
  ) {
    this.revision = revision;
  }

  get record(): Readonly<TaskRecord> {
    return this.current;
  }

  /** True once another replica took the task over (a write found the record changed). */
  get lost(): boolean {
    return this.taken;
  }

  /**
   * Writes a change of the record after the writes before it. A conflict means the task was taken over: `lost`
   * turns true, `onLost` is called, and the write is dropped, as are all after it.
   */
  write(change: Partial<TaskRecord>): Promise<void> {
    const next = this.tail.then(async () => {
      if (this.taken) return;
      const record = changed(this.current, change);
      try {
        this.revision = await this.ledger.store.update(record, this.revision);
        this.current = record;
      } catch (error) {
        if (!(error instanceof RevisionConflictError)) throw error;
        this.ledger.logger.warn({ triggeredid: record.id }, "task taken over by another replica");
        this.taken = true;
        this.onLost?.(new LeaseLostError(record.id));
      }
    });
    this.tail = next.catch(() => undefined);
    return next;
  }
}

/**
 * The record with `change` applied, as a literal with every field in one order: a spread copy gets a hidden
 * class of its own each time (about 250 bytes), and thousands of records are held at once. Undefined fields are
 * left out of the stored JSON.
 */
function changed(record: TaskRecord, change: Partial<TaskRecord>): TaskRecord {
  return {
    id: record.id,
    task: record.task,
    event: record.event,
    phase: change.phase ?? record.phase,
    receivedAt: record.receivedAt,
    deadline: record.deadline,
    taskData: change.taskData ?? record.taskData,
    finish: change.finish ?? record.finish,
    doneAt: change.doneAt ?? record.doneAt,
    owner: change.owner ?? record.owner,
  };
}

/** The task moved to another replica while this one worked on it: it must stop without answering. */
export class LeaseLostError extends Error {
  override name = "LeaseLostError";
  constructor(readonly id: string) {
    super(`task ${id} was taken over by another replica`);
  }
}

/**
 * The durable memory of the task connector: records tasks as they arrive (which also drops redeliveries), holds
 * the tasks this replica works on, keeps its heartbeat (one lease for all of them), and finds the tasks of
 * replicas whose heartbeat stopped.
 */
export class TaskLedger {
  readonly store: TaskStore;
  readonly replica: string;
  readonly leaseMs: number;
  readonly logger: Logger;
  readonly now: () => number;
  private readonly held = new Map<string, HeldTask>();
  /** The heartbeats that had ended at the last scan (replica -> until): a scan for each is enough. */
  private readonly scannedEnded = new Map<string, number>();
  private scanRequested = false;
  private lastScanAt = -Infinity;

  constructor(options: TaskLedgerOptions) {
    this.store = options.store;
    this.replica = options.replica;
    this.leaseMs = options.leaseMs;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
  }

  /** Writes this replica's heartbeat: the tasks it owns are its own for another `leaseMs`. */
  async beat(): Promise<void> {
    await this.store.beat(this.replica, this.now() + this.leaseMs);
  }

  /**
   * Ends the heartbeat: the unfinished tasks of this replica may be carried on by another at once. It ends now
   * (not at 0), so that every stop of a replica id is a new end the others scan for.
   */
  async end(): Promise<void> {
    await this.store.beat(this.replica, this.now());
  }

  /**
   * Records a newly received task, owned by this replica. Undefined when a record of the same id exists: a
   * redelivery, or the same event sent twice; its owner (or a takeover) answers it.
   */
  async accept(fields: Omit<TaskRecord, "owner" | "phase" | "taskData">): Promise<HeldTask | undefined> {
    const record = changed({ ...fields, phase: "accepted", taskData: {} }, { owner: this.replica });
    const outcome = await this.store.create(record);
    if (!outcome.created) return undefined;
    return this.hold(new HeldTask(record, outcome.revision, this));
  }

  /**
   * Takes a stored task over (one `claimable` answered). Undefined when it is held here or done, or when another
   * replica changed the record since it was read (it got the task first).
   */
  async claim(stored: StoredTask): Promise<HeldTask | undefined> {
    const { record } = stored;
    if (this.held.has(record.id) || record.phase === "done") return undefined;
    const claimed = changed(record, { owner: this.replica });
    try {
      const revision = await this.store.update(claimed, stored.revision);
      return this.hold(new HeldTask(claimed, revision, this));
    } catch (error) {
      if (error instanceof RevisionConflictError) return undefined;
      throw error;
    }
  }

  /**
   * Whether the records should be read for tasks to carry on: a heartbeat ended since the last scan (a replica
   * died or stopped), a task of this replica was interrupted (`requestScan`), or ten leases passed (a safety net
   * for owners that never wrote a heartbeat).
   */
  async scanDue(): Promise<boolean> {
    if (this.scanRequested || this.now() - this.lastScanAt >= 10 * this.leaseMs) return true;
    const now = this.now();
    for (const [replica, until] of await this.store.beats()) {
      if (replica !== this.replica && until <= now && this.scannedEnded.get(replica) !== until) return true;
    }
    return false;
  }

  /** Asks for a scan at the next turn: a task of this replica was let go unfinished and must be carried on. */
  requestScan(): void {
    this.scanRequested = true;
  }

  /**
   * Tasks not done and not held here whose owner is this replica (from before a restart, or interrupted), or a
   * replica whose heartbeat ended or was never written.
   */
  async claimable(): Promise<StoredTask[]> {
    const startedAt = this.now();
    const beats = await this.store.beats();
    const unfinished = await this.store.unfinished();
    // only a scan that read everything counts: a failed one is tried again at the next turn
    this.scanRequested = false;
    this.lastScanAt = startedAt;
    const now = this.now();
    for (const [replica, until] of beats) if (until <= now) this.scannedEnded.set(replica, until);
    return unfinished.filter(({ record }) => {
      if (this.held.has(record.id)) return false;
      if (record.owner === undefined || record.owner === this.replica) return true;
      return (beats.get(record.owner) ?? 0) <= now;
    });
  }

  /** Lets a task go: done, lost, or left unfinished (carried on by the next scan, here or by another replica). */
  release(task: HeldTask): void {
    this.held.delete(task.record.id);
  }

  private hold(task: HeldTask): HeldTask {
    this.held.set(task.record.id, task);
    return task;
  }
}
