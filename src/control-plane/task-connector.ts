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
import type { Logger } from "../shared/logger.js";
import type { SecretRegistry } from "../shared/secrets.js";
import { formatDuration } from "../shared/duration.js";
import type { ControlPlane, Delivery } from "./control-plane.js";

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
}

function safely<T>(compute: () => T, fallback: T): T {
  try {
    return compute();
  } catch {
    return fallback;
  }
}

const shutdownMessage = (task: string) => `the service shut down during the ${task}; trigger it again`;

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
  private readonly inFlight = new Set<Promise<void>>();
  private readonly stopping = new AbortController();

  constructor(private readonly options: TaskConnectorOptions) {
    for (const handler of options.handlers) this.handlers.set(handler.task, handler);
  }

  async start(): Promise<void> {
    const types = [...this.handlers.keys()].map((task) => taskEventType(task, "triggered"));
    await this.options.controlPlane.subscribe(types, (delivery) => this.track(this.onDelivery(delivery)));
    this.options.logger.info({ types }, "subscribed to task events");
  }

  /** Aborts running tasks (they answer `errored`) and waits until every answer was published. */
  async stop(): Promise<void> {
    this.stopping.abort(new Error("the service is shutting down"));
    await Promise.allSettled([...this.inFlight]);
  }

  /** Resolves when no task is running; for tests and graceful shutdown. */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private track(work: Promise<void>): Promise<void> {
    this.inFlight.add(work);
    return work.finally(() => this.inFlight.delete(work));
  }

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
    if (this.seen.has(envelope.data.id)) {
      logger.info({ triggeredid: envelope.data.id }, "ignored a redelivered triggered event");
      return;
    }
    this.remember(envelope.data.id);
    await this.runTask(handler, envelope.data);
  }

  private remember(id: string): void {
    this.seen.add(id);
    if (this.seen.size > REMEMBERED_IDS) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }

  private async runTask<Data>(handler: TaskHandler<Data>, envelope: KeptnEnvelope): Promise<void> {
    const scope = keptnEventDataSchema.safeParse(envelope.data ?? {});
    const base: TriggeredEvent<unknown> = {
      id: envelope.id,
      type: envelope.type,
      task: handler.task,
      shkeptncontext: envelope.shkeptncontext,
      shkeptnspecversion: envelope.shkeptnspecversion ?? undefined,
      gitcommitid: envelope.gitcommitid ?? undefined,
      scope: scope.success ? scope.data : { project: "", stage: "", service: "", labels: {} },
      data: envelope.data,
    };
    const logger = this.options.logger.child({
      shkeptncontext: base.shkeptncontext,
      triggeredid: base.id,
      project: base.scope.project,
      stage: base.scope.stage,
      service: base.scope.service,
    });
    await this.publish(buildStartedEvent(base, this.options.source), logger);
    logger.info({ task: handler.task }, "task started");

    let finish: TaskFinish;
    try {
      finish = await this.finishOf(handler, base, scope.success ? undefined : scope.error, logger);
    } catch (error) {
      // Last line of defence: whatever went wrong, the sequence must not hang on a started task.
      logger.error({ err: error, task: handler.task }, "task failed unexpectedly");
      finish = {
        status: "errored",
        result: "fail",
        message: `internal error during the ${handler.task}: ${errorMessage(error)}`,
      };
    }
    finish.message = this.options.secrets.redact(finish.message);
    await this.publish(buildFinishedEvent(base, this.options.source, finish), logger);
    logger.info(
      { task: handler.task, status: finish.status, result: finish.result, message: finish.message },
      "task finished",
    );
  }

  private async finishOf<Data>(
    handler: TaskHandler<Data>,
    base: TriggeredEvent<unknown>,
    scopeError: z.ZodError | undefined,
    logger: Logger,
  ): Promise<TaskFinish> {
    const data = handler.dataSchema.safeParse(base.data ?? {});
    if (scopeError || !data.success) {
      const issues = (scopeError ?? data.error)?.issues ?? [];
      return {
        status: "errored",
        result: "fail",
        message: `the ${base.type} event is malformed: ${issues.map((i) => `${["data", ...i.path].join(".")}: ${i.message}`).join("; ")}`,
      };
    }
    const event: TriggeredEvent<Data> = { ...base, data: data.data };
    // What is known of the task so far: the handler's base data, then whatever it reports as it goes.
    const baseTaskData: Record<string, unknown> = { ...safely(() => handler.baseTaskData(event), {}) };
    const progress = (taskData: Record<string, unknown>) => Object.assign(baseTaskData, taskData);
    const missing = (["project", "stage", "service"] as const).filter((key) => !event.scope[key]);
    if (missing.length > 0) {
      return {
        status: "errored",
        result: "fail",
        message: `the ${event.type} event has no ${missing.map((m) => `data.${m}`).join(", ")}; Keptn sends them for every task`,
        taskData: baseTaskData,
      };
    }

    if (this.stopping.signal.aborted) {
      return {
        status: "errored",
        result: "fail",
        message: shutdownMessage(handler.task),
        taskData: baseTaskData,
      };
    }
    const timeoutMs = handler.timeoutMs(event);
    const deadline = Date.now() + timeoutMs;
    const overdueController = new AbortController();
    const signal = AbortSignal.any([overdueController.signal, this.stopping.signal]);
    const grace = this.options.deadlineGraceMs ?? 5_000;
    let timer: NodeJS.Timeout | undefined;
    const overdue = new Promise<TaskFinish>((resolve) => {
      timer = setTimeout(() => {
        overdueController.abort(
          new DeadlineExceededError(`the ${handler.task} did not finish within ${formatDuration(timeoutMs)}`),
        );
        resolve({
          status: "errored",
          result: "fail",
          message: `the ${handler.task} did not finish within ${formatDuration(timeoutMs)}; the service stopped waiting`,
          taskData: baseTaskData,
        });
      }, timeoutMs + grace);
    });
    try {
      const outcome = await Promise.race([
        handler.execute({ event, logger, signal, deadline, progress }),
        overdue,
      ]);
      return { ...outcome, taskData: { ...baseTaskData, ...outcome.taskData } };
    } catch (error) {
      return this.finishOfError(handler.task, error, baseTaskData, logger);
    } finally {
      clearTimeout(timer);
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
    if (this.stopping.signal.aborted) {
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
