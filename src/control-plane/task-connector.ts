import type { z } from "zod";
import {
  keptnEnvelopeSchema,
  keptnEventDataSchema,
  type KeptnEnvelope,
  type TriggeredEvent,
} from "../keptn/cloud-event.js";
import { buildFinishedEvent, buildStartedEvent, type TaskFinish } from "../keptn/event-builders.js";
import { taskEventType, taskOf } from "../keptn/event-types.js";
import {
  DeadlineExceededError,
  DeploymentFailedError,
  errorMessage,
  RetryableError,
  TerminalError,
} from "../shared/errors.js";
import { taskLogger, type Logger } from "../shared/logger.js";
import type { SecretRegistry } from "../shared/secrets.js";
import { formatDuration } from "../shared/duration.js";
import { Gate } from "../shared/gate.js";
import type { ControlPlane, Delivery } from "./control-plane.js";
import { LeaseLostError, type HeldTask, type TaskLedger } from "./task-ledger.js";

/** What a task handler gets for one triggered event: the typed event, a child logger, a deadline and its signal. */
export interface TaskContext<Data> {
  event: TriggeredEvent<Data>;
  logger: Logger;
  /** Aborted when the deadline passes or the service stops. */
  signal: AbortSignal;
  /** Epoch milliseconds by which the task must be answered. */
  deadline: number;
  /** Records task data known so far (e.g. the pushed commit); it is sent in `.finished` whatever ends the task. */
  progress(taskData: Record<string, unknown>): void;
  /**
   * The task ran before, in this or another process that stopped or died: it is carried on, not started anew.
   * `taskData` is what that run recorded with `progress`.
   */
  resumed?: { taskData: Record<string, unknown> };
}

/**
 * One Keptn task this integration performs (`deployment` now; `rollback`, `release` later). The connector sends
 * `.started` itself and turns what `execute` returns, or throws, into `.finished`: handlers never build envelopes.
 */
export interface TaskHandler<Data> {
  task: string;
  dataSchema: z.ZodType<Data, unknown>;
  /** How long the whole task may take, from receipt to `.finished`. Keptn never times out a started task. */
  timeoutMs(event: TriggeredEvent<Data>): number;
  /** `data.<task>` sent in every `.finished`, merged under what `execute` or an error adds. */
  baseTaskData(event: TriggeredEvent<Data>): Record<string, unknown>;
  execute(context: TaskContext<Data>): Promise<TaskFinish>;
}

export interface TaskConnectorOptions {
  controlPlane: ControlPlane;
  /** Integration name: the `source` of every event sent. */
  source: string;
  logger: Logger;
  secrets: SecretRegistry;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  handlers: Array<TaskHandler<any>>;
  /** How long past its deadline a handler may run before the connector answers for it. */
  deadlineGraceMs?: number;
  /**
   * The durable memory of the tasks (a JetStream bucket or a directory). With it, tasks survive a crash and are
   * carried on at start, a redelivered event is recognised, replicas share tasks through leases, and a stop hands
   * running tasks over instead of answering them. Without it, the connector keeps tasks in memory only.
   */
  ledger?: TaskLedger;
  /** On stop, how long running tasks may go on before they are aborted (handed over, or answered errored). */
  stopGraceMs?: number;
  /** With a ledger: finished tasks are forgotten after this long (swept at start and every hour). */
  doneRetentionMs?: number;
}

function safely<T>(compute: () => T, fallback: T): T {
  try {
    return compute();
  } catch {
    return fallback;
  }
}

/**
 * A triggered event as the connector carries it, parsed once: at receipt, or when a recorded task is carried on.
 * An event whose data does not parse is kept with what is wrong with it, so that it is still answered.
 */
interface Prepared<Data> {
  /** The envelope's fields and scope; what `.started` and `.finished` are built from. */
  base: TriggeredEvent<unknown>;
  /** The event with its data typed by the handler's schema; undefined when `problems` says why not. */
  event: TriggeredEvent<Data> | undefined;
  problems: z.core.$ZodIssue[];
  /** The handler's timeout for the event (60 s for one that does not parse; it is answered at once). */
  timeoutMs: number;
}

function prepare<Data>(handler: TaskHandler<Data>, envelope: KeptnEnvelope): Prepared<Data> {
  const scope = keptnEventDataSchema.safeParse(envelope.data ?? {});
  const base: TriggeredEvent<unknown> = {
    id: envelope.id,
    type: envelope.type,
    task: handler.task,
    shkeptncontext: envelope.shkeptncontext,
    shkeptnspecversion: envelope.shkeptnspecversion ?? undefined,
    gitcommitid: envelope.gitcommitid ?? undefined,
    scope: scope.success ? scope.data : { project: "", stage: "", service: "", labels: {} },
    data: undefined,
  };
  const data = handler.dataSchema.safeParse(envelope.data ?? {});
  if (!scope.success || !data.success) {
    const problems = (scope.success ? data.error?.issues : scope.error.issues) ?? [];
    return { base, event: undefined, problems, timeoutMs: 60_000 };
  }
  const event: TriggeredEvent<Data> = { ...base, data: data.data };
  return { base, event, problems: [], timeoutMs: safely(() => handler.timeoutMs(event), 60_000) };
}

const shutdownMessage = (task: string) => `the service shut down during the ${task}; trigger it again`;

/** Tasks that may be between receipt and their recorded `.started` at once. */
const START_GATE = 64;

/** How many answered triggered ids are remembered to drop redeliveries of the same event. */
const REMEMBERED_IDS = 10_000;

/**
 * A small control-plane connector in the style of go-utils' Go SDK (`pkg/sdk/keptn.go`): it subscribes to the
 * `.triggered` type of every handler, answers `.started` at once and `.finished` at the end, whatever happens.
 */
export class TaskConnector {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  private readonly handlers = new Map<string, TaskHandler<any>>();
  private readonly seen = new Set<string>();
  /**
   * Tasks between receipt and their recorded `.started`. A burst of thousands of events would otherwise have all
   * of them half-way at once, and the garbage of each step would live long enough to grow the heap for good.
   */
  private readonly startGate = new Gate(START_GATE);
  private readonly inFlight = new Set<Promise<void>>();
  /** Set when the running tasks must end: the grace period of a stop is over. */
  private stopped = false;
  /** The abort controller of each running task's work: one per task, aborted at the deadline, a takeover or stop. */
  private readonly running = new Set<AbortController>();
  /** Set when a stop begins: no new task starts. */
  private stopRequested = false;
  private leaseTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  /** The scan for tasks to carry on, while one runs (the lease timer skips a turn rather than overlap). */
  private scanning: Promise<void> | undefined;
  /** The write of the heartbeat, while one is on its way. */
  private beating: Promise<void> | undefined;

  constructor(private readonly options: TaskConnectorOptions) {
    for (const handler of options.handlers) this.handlers.set(handler.task, handler);
  }

  async start(): Promise<void> {
    const { ledger, logger } = this.options;
    if (ledger) {
      await ledger.store.open();
      // before the first task is recorded as this replica's, its heartbeat says the replica is alive
      await ledger.beat();
      logger.info({ store: ledger.store.description, replica: ledger.replica }, "task store open");
    }
    const types = [...this.handlers.keys()].map((task) => taskEventType(task, "triggered"));
    await this.options.controlPlane.subscribe(types, (delivery) => this.track(this.onDelivery(delivery)));
    logger.info({ types }, "subscribed to task events");
    if (ledger) {
      // the heartbeat goes on while the first scan reads what there is to carry on, however long that takes
      this.leaseTimer = setInterval(() => this.keepLeases(), Math.max(50, ledger.leaseMs / 3));
      this.leaseTimer.unref();
      this.scanning = this.carryOn().finally(() => (this.scanning = undefined));
      await this.scanning;
      await this.sweep();
      this.sweepTimer = setInterval(() => void this.sweep(), 3_600_000);
      this.sweepTimer.unref();
    }
  }

  /**
   * Stops: no new task starts, running ones get `stopGraceMs` to end, then they are aborted. With a ledger an
   * aborted task is handed over (its lease ended, no answer sent) for another replica or the next start; without
   * one it is answered `errored`. Resolves when every task has ended.
   */
  async stop(): Promise<void> {
    this.stopRequested = true;
    clearInterval(this.sweepTimer);
    // the heartbeat goes on through the grace period: the tasks still running are this replica's
    await this.scanning;
    const grace = this.options.stopGraceMs ?? 0;
    if (this.inFlight.size > 0 && grace > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.idle(), new Promise<void>((resolve) => (timer = setTimeout(resolve, grace)))]);
      clearTimeout(timer);
    }
    this.stopped = true;
    for (const controller of this.running) controller.abort(new Error("the service is shutting down"));
    await Promise.allSettled([...this.inFlight]);
    clearInterval(this.leaseTimer);
    await this.beating;
    // what is not done is handed over: the next start or another replica carries it on without waiting for the lease
    await this.options.ledger?.end().catch((error: unknown) => {
      this.options.logger.warn(
        { err: error },
        "could not end the heartbeat; the tasks left wait for the lease",
      );
    });
  }

  /** Resolves when no task is running; for tests and graceful shutdown. */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private track(work: Promise<void>): Promise<void> {
    this.inFlight.add(work);
    return work.finally(() => this.inFlight.delete(work));
  }

  /**
   * Takes one delivery: resolves once the task is recorded (the intake acknowledges then), while the task itself
   * goes on. Rejects when it could not be recorded, so that the intake has it delivered again.
   */
  private async onDelivery(delivery: Delivery): Promise<void> {
    const { logger } = this.options;
    const envelope = keptnEnvelopeSchema.safeParse(delivery.body);
    if (!envelope.success) {
      logger.warn(
        {
          eventType: delivery.eventType,
          problems: envelope.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`),
        },
        "dropped an event that cannot be answered (no id or shkeptncontext)",
      );
      return;
    }
    const task = taskOf(envelope.data.type);
    const handler = task === undefined ? undefined : this.handlers.get(task);
    if (!handler || envelope.data.type !== taskEventType(handler.task, "triggered")) {
      logger.warn(
        { eventType: envelope.data.type, id: envelope.data.id },
        "dropped an event of a type no handler takes",
      );
      return;
    }
    const prepared = prepare(handler, envelope.data);
    // Until its `.started` is sent and recorded, a task holds a place at the gate (the intake waits for one).
    const leave = await this.startGate.enter();
    try {
      await this.accept(handler, prepared, delivery, leave);
    } catch (error) {
      leave();
      throw error;
    }
  }

  private async accept<Data>(
    handler: TaskHandler<Data>,
    prepared: Prepared<Data>,
    delivery: Delivery,
    leave: () => void,
  ): Promise<void> {
    const { logger } = this.options;
    const { id } = prepared.base;
    const ledger = this.options.ledger;
    if (ledger) {
      const receivedAt = ledger.now();
      const held = await ledger.accept({
        id,
        task: handler.task,
        event: delivery.body,
        receivedAt,
        deadline: receivedAt + prepared.timeoutMs,
      });
      if (!held) {
        leave();
        logger.info({ triggeredid: id }, "ignored a triggered event already recorded");
        return;
      }
      if (this.stopRequested) {
        // Recorded, not started: the next start (or another replica) takes it.
        leave();
        ledger.release(held);
        return;
      }
      void this.track(this.runTask(handler, prepared, held, false, leave));
      return;
    }
    if (this.seen.has(id)) {
      leave();
      logger.info({ triggeredid: id }, "ignored a redelivered triggered event");
      return;
    }
    this.remember(id);
    void this.track(this.runTask(handler, prepared, undefined, false, leave));
  }

  /** Forgets finished tasks older than `doneRetentionMs`. */
  private async sweep(): Promise<void> {
    const ledger = this.options.ledger;
    if (!ledger) return;
    const retention = this.options.doneRetentionMs ?? 24 * 3_600_000;
    try {
      const swept = await ledger.store.sweep(ledger.now() - retention);
      if (swept > 0) this.options.logger.info({ swept }, "forgot finished tasks");
    } catch (error) {
      this.options.logger.warn({ err: error }, "could not sweep the task store");
    }
  }

  /**
   * Renews this replica's heartbeat, and carries on tasks whose owner stopped when a scan is due. The heartbeat
   * never waits for a scan: a long scan must not make this replica's own tasks look orphaned.
   */
  private keepLeases(): void {
    const ledger = this.options.ledger;
    if (!ledger) return;
    this.beating ??= ledger
      .beat()
      .catch((error: unknown) => {
        this.options.logger.warn({ err: error }, "could not renew the heartbeat; trying again");
      })
      .finally(() => (this.beating = undefined));
    if (this.stopRequested) return;
    this.scanning ??= (async () => {
      if (await ledger.scanDue()) await this.carryOn();
    })()
      .catch((error: unknown) => {
        this.options.logger.warn({ err: error }, "could not look for tasks to carry on; trying again");
      })
      .finally(() => (this.scanning = undefined));
  }

  /** Claims the recorded tasks this replica may carry on (its own from before a restart, or orphaned ones). */
  private async carryOn(): Promise<void> {
    const ledger = this.options.ledger!;
    let claimable;
    try {
      claimable = await ledger.claimable();
    } catch (error) {
      this.options.logger.warn({ err: error }, "could not read the task store");
      return;
    }
    for (const stored of claimable) {
      if (this.stopRequested) return;
      const handler = this.handlers.get(stored.record.task);
      const envelope = keptnEnvelopeSchema.safeParse(stored.record.event);
      if (!handler || !envelope.success) continue;
      const held = await ledger.claim(stored).catch((error: unknown) => {
        this.options.logger.warn({ err: error, triggeredid: stored.record.id }, "could not claim a task");
        ledger.requestScan();
        return undefined;
      });
      if (!held) continue;
      this.options.logger.info(
        { triggeredid: held.record.id, phase: held.record.phase, previousOwner: stored.record.owner },
        "carrying on a recorded task",
      );
      void this.track(this.runTask(handler, prepare(handler, envelope.data), held, true));
    }
  }

  private remember(id: string): void {
    this.seen.add(id);
    if (this.seen.size > REMEMBERED_IDS) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }

  /**
   * Runs a task from its recorded phase (`accepted` for a new one) to its answer. A failure of the store or NATS
   * between the steps (an outage) interrupts it: the record keeps the phase reached, and this replica (or another,
   * after a stop) carries it on from there.
   */
  private async runTask<Data>(
    handler: TaskHandler<Data>,
    prepared: Prepared<Data>,
    held?: HeldTask,
    resumed = false,
    leave?: () => void,
  ): Promise<void> {
    const { base } = prepared;
    const logger = taskLogger(this.options.logger, {
      shkeptncontext: base.shkeptncontext,
      triggeredid: base.id,
      project: base.scope.project,
      stage: base.scope.stage,
      service: base.scope.service,
    });
    const phase = held?.record.phase ?? "accepted";
    try {
      if (phase === "accepted") {
        await this.publish(buildStartedEvent(base, this.options.source), logger);
        await held?.write({ phase: "started" });
        logger.info({ task: handler.task }, "task started");
      }
      leave?.();

      let finish: TaskFinish;
      try {
        finish =
          phase === "finishing" && held?.record.finish
            ? held.record.finish
            : await this.finishOf(handler, prepared, logger, held, resumed);
      } catch (error) {
        // Last line of defence: whatever went wrong, the sequence must not hang on a started task.
        logger.error({ err: error, task: handler.task }, "task failed unexpectedly");
        finish = {
          status: "errored",
          result: "fail",
          message: `internal error during the ${handler.task}: ${errorMessage(error)}`,
        };
      }
      if (held?.lost) {
        logger.info({ task: handler.task }, "task taken over by another replica; it answers");
        return;
      }
      if (held && this.stopped && phase !== "finishing") {
        logger.info(
          { task: handler.task },
          "task handed over on stop; the next start or another replica answers",
        );
        return;
      }
      finish.message = this.options.secrets.redact(finish.message);
      await held?.write({ phase: "finishing", finish });
      if (held?.lost) {
        logger.info(
          { task: handler.task },
          "task taken over by another replica before its answer; it answers",
        );
        return;
      }
      await this.publish(buildFinishedEvent(base, this.options.source, finish), logger);
      await held?.write({ phase: "done", doneAt: Date.now() });
      logger.info(
        { task: handler.task, status: finish.status, result: finish.result, message: finish.message },
        "task finished",
      );
    } catch (error) {
      logger.warn(
        { err: error, phase: held?.record.phase },
        "task interrupted; it is carried on from its recorded phase",
      );
    } finally {
      leave?.();
      if (held) {
        this.options.ledger!.release(held);
        // interrupted: carried on at the next turn of the lease timer, here or (after a stop) elsewhere
        if (!held.lost && held.record.phase !== "done" && !this.stopRequested)
          this.options.ledger!.requestScan();
      }
    }
  }

  private async finishOf<Data>(
    handler: TaskHandler<Data>,
    { base, event, problems, timeoutMs }: Prepared<Data>,
    logger: Logger,
    held: HeldTask | undefined,
    resumed: boolean,
  ): Promise<TaskFinish> {
    if (!event) {
      return {
        status: "errored",
        result: "fail",
        message: `the ${base.type} event is malformed: ${problems.map((i) => `${["data", ...i.path].join(".")}: ${i.message}`).join("; ")}`,
      };
    }
    // What is known of the task so far: the handler's base data, then whatever it reports as it goes.
    const baseTaskData: Record<string, unknown> = { ...safely(() => handler.baseTaskData(event), {}) };
    // A resumed task starts from what its earlier run recorded.
    Object.assign(baseTaskData, held?.record.taskData);
    const recorded = { ...held?.record.taskData };
    const progress = (taskData: Record<string, unknown>) => {
      Object.assign(baseTaskData, taskData);
      Object.assign(recorded, taskData);
      held?.write({ taskData: { ...recorded } }).catch((error: unknown) => {
        logger.warn({ err: error }, "could not record the task's progress");
      });
    };
    const missing = (["project", "stage", "service"] as const).filter((key) => !event.scope[key]);
    if (missing.length > 0) {
      return {
        status: "errored",
        result: "fail",
        message: `the ${event.type} event has no ${missing.map((m) => `data.${m}`).join(", ")}; Keptn sends them for every task`,
        taskData: baseTaskData,
      };
    }

    if (this.stopped) {
      return {
        status: "errored",
        result: "fail",
        message: shutdownMessage(handler.task),
        taskData: baseTaskData,
      };
    }
    // A recorded task keeps the deadline it got when it arrived, across restarts and takeovers.
    const deadline = held?.record.deadline ?? Date.now() + timeoutMs;
    const leftMs = Math.max(0, deadline - Date.now());
    if (resumed && leftMs === 0) {
      // Nothing is started after the deadline: the task is answered as timed out.
      return {
        status: "errored",
        result: "fail",
        message: `the ${handler.task} did not finish within ${formatDuration(timeoutMs)}: its deadline passed while no replica of the service was running; trigger it again`,
        taskData: baseTaskData,
      };
    }
    // One controller for whatever ends the task's work: the deadline, a takeover, or the end of a stop's grace.
    const controller = new AbortController();
    this.running.add(controller);
    if (held) {
      held.onLost = (error) => controller.abort(error);
      if (held.lost) controller.abort(new LeaseLostError(held.record.id));
    }
    const grace = this.options.deadlineGraceMs ?? 5_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      // The handler's answer, or the deadline's when the handler has not answered by then (plus the grace).
      const outcome = await new Promise<TaskFinish>((resolve, reject) => {
        timer = setTimeout(() => {
          controller.abort(
            new DeadlineExceededError(
              `the ${handler.task} did not finish within ${formatDuration(timeoutMs)}`,
            ),
          );
          resolve({
            status: "errored",
            result: "fail",
            message: `the ${handler.task} did not finish within ${formatDuration(timeoutMs)}; the service stopped waiting`,
            taskData: baseTaskData,
          });
        }, leftMs + grace);
        handler
          .execute({
            event,
            logger,
            signal: controller.signal,
            deadline,
            progress,
            ...(resumed && held ? { resumed: { taskData: { ...held.record.taskData } } } : {}),
          })
          .then(resolve, reject);
      });
      return { ...outcome, taskData: { ...baseTaskData, ...outcome.taskData } };
    } catch (error) {
      return this.finishOfError(handler.task, error, baseTaskData, logger);
    } finally {
      clearTimeout(timer);
      this.running.delete(controller);
      if (held) held.onLost = undefined;
    }
  }

  private finishOfError(
    task: string,
    error: unknown,
    baseTaskData: Record<string, unknown>,
    logger: Logger,
  ): TaskFinish {
    if (error instanceof DeploymentFailedError) {
      return {
        status: "succeeded",
        result: "fail",
        message: error.message,
        taskData: { ...baseTaskData, ...error.taskData },
      };
    }
    if (error instanceof RetryableError) {
      return { status: "errored", result: "fail", message: error.message, taskData: baseTaskData };
    }
    if (error instanceof TerminalError || error instanceof DeadlineExceededError) {
      return {
        status: "errored",
        result: "fail",
        message: error.message,
        taskData: { ...baseTaskData, ...error.taskData },
      };
    }
    if (this.stopped) {
      return {
        status: "errored",
        result: "fail",
        message: shutdownMessage(task),
        taskData: baseTaskData,
      };
    }
    logger.error({ err: error, task }, "task failed unexpectedly");
    return {
      status: "errored",
      result: "fail",
      message: `internal error during the ${task}: ${errorMessage(error)}`,
      taskData: baseTaskData,
    };
  }

  private async publish(event: { toJSON(): Record<string, unknown> }, logger: Logger): Promise<void> {
    const json = event.toJSON() as { type: string };
    try {
      await this.options.controlPlane.publish(json);
    } catch (error) {
      logger.error({ err: error, eventType: json.type }, "could not publish event");
      throw error;
    }
  }
}
