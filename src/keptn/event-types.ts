/** Keptn task event types: `sh.keptn.event.<task>.<kind>` (protocol.md §1: exactly five dot-separated parts). */
export type TaskEventKind = "triggered" | "started" | "status.changed" | "finished";

export const KEPTN_SPEC_VERSION = "0.2.4";

export function taskEventType(task: string, kind: TaskEventKind): string {
  return `sh.keptn.event.${task}.${kind}`;
}

/** The task of a task event type, e.g. "deployment" for "sh.keptn.event.deployment.triggered". */
export function taskOf(eventType: string): string | undefined {
  const match = /^sh\.keptn\.event\.([^.]+)\.(triggered|started|finished)$/.exec(eventType);
  return match?.[1];
}
