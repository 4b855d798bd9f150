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

/** A record this replica holds a lease on: every write goes through here, one at a time, compare-and-set. */
export class HeldTask {
  private revision: number;
  private tail: Promise<void> = Promise.resolve();
  private readonly lostController = new AbortController();

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

  /** Aborted when another replica took the task over (a write found the record changed). */
  get lost(): AbortSignal {
    return this.lostController.signal;
  }

  /**
   * Writes a change of the record after the writes before it. A conflict means the lease was lost: the signal
   * `lost` aborts and the write is dropped, as are all after it.
   */
  write(change: Partial<TaskRecord>): Promise<void> {
    const next = this.tail.then(async () => {
      if (this.lost.aborted) return;
      const record = { ...this.current, ...change };
      try {
        this.revision = await this.ledger.store.update(record, this.revision);
        this.current = record;
      } catch (error) {
        if (!(error instanceof RevisionConflictError)) throw error;
        this.ledger.logger.warn({ triggeredid: record.id }, "task taken over by another replica");
        this.lostController.abort(new LeaseLostError(record.id));
      }
    });
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** Writes a new lease end, keeping everything else. */
  renew(): Promise<void> {
    return this.write({ owner: this.ledger.replica, leaseUntil: this.ledger.now() + this.ledger.leaseMs });
  }
}

/** The task moved to another replica while this one worked on it: it must stop without answering. */
export class LeaseLostError extends Error {
  override name = "LeaseLostError";
  constructor(readonly id: string) {
    super(`task ${id} was taken over by another replica`);
  }
}

/**
 * The durable memory of the task connector: records tasks as they arrive (which also drops redeliveries), holds a
 * lease on each task this replica works on, renews it, and finds tasks whose owner stopped renewing.
 */
export class TaskLedger {
  readonly store: TaskStore;
  readonly replica: string;
  readonly leaseMs: number;
  readonly logger: Logger;
  readonly now: () => number;
  private readonly held = new Map<string, HeldTask>();

  constructor(options: TaskLedgerOptions) {
    this.store = options.store;
    this.replica = options.replica;
    this.leaseMs = options.leaseMs;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
  }

  /**
   * Records a newly received task with this replica's lease. Undefined when a record of the same id exists: a
   * redelivery, or the same event sent twice; its owner (or a takeover) answers it.
   */
  async accept(
    fields: Omit<TaskRecord, "owner" | "leaseUntil" | "phase" | "taskData">,
  ): Promise<HeldTask | undefined> {
    const record: TaskRecord = {
      ...fields,
      phase: "accepted",
      taskData: {},
      owner: this.replica,
      leaseUntil: this.now() + this.leaseMs,
    };
    const outcome = await this.store.create(record);
    if (!outcome.created) return undefined;
    return this.hold(new HeldTask(record, outcome.revision, this));
  }

  /**
   * Takes a stored task over when it is this replica's own (a restart) or its lease has run out. Undefined when
   * another replica holds it, or got it first.
   */
  async claim(stored: StoredTask): Promise<HeldTask | undefined> {
    const { record } = stored;
    if (this.held.has(record.id) || record.phase === "done") return undefined;
    const mine = record.owner === this.replica;
    if (!mine && (record.leaseUntil ?? 0) > this.now()) return undefined;
    const claimed: TaskRecord = { ...record, owner: this.replica, leaseUntil: this.now() + this.leaseMs };
    try {
      const revision = await this.store.update(claimed, stored.revision);
      return this.hold(new HeldTask(claimed, revision, this));
    } catch (error) {
      if (error instanceof RevisionConflictError) return undefined;
      throw error;
    }
  }

  /** Tasks not done whose lease ran out (or that are this replica's own from before a restart). */
  async claimable(): Promise<StoredTask[]> {
    const now = this.now();
    return (await this.store.unfinished()).filter(
      ({ record }) =>
        !this.held.has(record.id) && (record.owner === this.replica || (record.leaseUntil ?? 0) <= now),
    );
  }

  /** Renews the lease of every task held. */
  async renewAll(): Promise<void> {
    await Promise.allSettled([...this.held.values()].map((task) => task.renew()));
  }

  /**
   * Lets a task go: done, lost, or handed over (`handOver` ends its lease now). A task whose hand-over cannot be
   * written (the store is down) keeps its lease until it runs out; this replica's own are claimable at once.
   */
  async release(task: HeldTask, handOver = false): Promise<void> {
    this.held.delete(task.record.id);
    if (handOver && !task.lost.aborted && task.record.phase !== "done") {
      await task.write({ leaseUntil: 0 }).catch((error: unknown) => {
        this.logger.warn({ err: error, triggeredid: task.record.id }, "could not hand over a task");
      });
    }
  }

  private hold(task: HeldTask): HeldTask {
    this.held.set(task.record.id, task);
    return task;
  }
}
