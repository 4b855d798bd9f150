import { randomUUID } from "node:crypto";
import { CloudEvent } from "cloudevents";
import { KEPTN_SPEC_VERSION, taskEventType } from "./event-types.js";
import type { TaskResult, TaskStatus, TriggeredEvent } from "./cloud-event.js";

export interface TaskFinish {
  status: TaskStatus;
  result: TaskResult;
  message: string;
  /** Goes under `data.<task>`. */
  taskData?: Record<string, unknown>;
}

/** What both answers share: the correlation attributes and the scope of the triggered event (protocol.md §2). */
function answer(
  triggered: TriggeredEvent<unknown>,
  kind: "started" | "finished",
  source: string,
  data: object,
) {
  return new CloudEvent<object>({
    specversion: "1.0",
    id: randomUUID(),
    type: taskEventType(triggered.task, kind),
    source,
    time: new Date().toISOString(),
    datacontenttype: "application/json",
    shkeptncontext: triggered.shkeptncontext,
    triggeredid: triggered.id,
    shkeptnspecversion: triggered.shkeptnspecversion || KEPTN_SPEC_VERSION,
    ...(triggered.gitcommitid ? { gitcommitid: triggered.gitcommitid } : {}),
    data: {
      project: triggered.scope.project,
      stage: triggered.scope.stage,
      service: triggered.scope.service,
      labels: triggered.scope.labels,
      ...data,
    },
  });
}

/** `<task>.started`, as helm-service sent it: status succeeded, no result yet. */
export function buildStartedEvent(triggered: TriggeredEvent<unknown>, source: string): CloudEvent<object> {
  return answer(triggered, "started", source, { status: "succeeded" });
}

export function buildFinishedEvent(
  triggered: TriggeredEvent<unknown>,
  source: string,
  finish: TaskFinish,
): CloudEvent<object> {
  return answer(triggered, "finished", source, {
    status: finish.status,
    result: finish.result,
    message: finish.message,
    ...(finish.taskData ? { [triggered.task]: finish.taskData } : {}),
  });
}
