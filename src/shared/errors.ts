/**
 * Failure classes of the service. Every failure is either terminal (the input or the setup is wrong: answer now,
 * never retry) or retryable (network, push race: retry with backoff, bounded). Errors keep their `cause` and say
 * what was being attempted. Errors that end a task may carry `taskData` (for example the git commit that was
 * pushed) so that the `.finished` event still tells what happened.
 */
export interface TaskErrorOptions {
  cause?: unknown;
  taskData?: Record<string, unknown>;
}

/** An error that ends a task; the TaskConnector turns its class into the status and result of `.finished`. */
abstract class TaskEndingError extends Error {
  readonly taskData: Record<string, unknown> | undefined;
  constructor(message: string, options: TaskErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.taskData = options.taskData;
  }
}

/** Bad input or configuration: the task is answered at once with `status: errored`, `result: fail`. */
export class TerminalError extends TaskEndingError {
  override name = "TerminalError";
}

/** The deployment ran and the GitOps tool reported that it failed: `status: succeeded`, `result: fail`. */
export class DeploymentFailedError extends TaskEndingError {
  override name = "DeploymentFailedError";
}

/** The task did not reach a final state before its deadline: `status: errored`, `result: fail`. */
export class DeadlineExceededError extends TaskEndingError {
  override name = "DeadlineExceededError";
}

/** A failure worth retrying (network error, 5xx, push rejected because the branch moved). */
export class RetryableError extends Error {
  override name = "RetryableError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
