import type { ChangedFile } from "../gitops-repo/gitops-repo.js";
import type { TriggeredEvent } from "../keptn/cloud-event.js";

/** The placeholders of `git.commitMessage`; `{labels.<name>}` reads a label of the triggered event. */
export const COMMIT_MESSAGE_FIELDS = [
  "project",
  "stage",
  "service",
  "image",
  "file",
  "changes",
  "shkeptncontext",
  "triggeredid",
] as const;

/** The message without the trailers when `git.commitMessage` is not set. */
export const DEFAULT_COMMIT_MESSAGE = `Deploy {service} {image} to {project}/{stage}

Keptn asked for a deployment of service {service} in stage {stage} of project {project}.
Changed in {file}:
{changes}`;

const PLACEHOLDER = /\{([a-zA-Z]+(?:\.[A-Za-z0-9_./-]+)?)\}/g;

/** The placeholders of a template that are not fields or labels; empty when it is fine. */
export function unknownPlaceholders(template: string): string[] {
  return [...template.matchAll(PLACEHOLDER)]
    .map((match) => match[1]!)
    .filter(
      (name) => !name.startsWith("labels.") && !(COMMIT_MESSAGE_FIELDS as readonly string[]).includes(name),
    );
}

/**
 * The commit message of a deployment: the configured template (or the default) with the Keptn fields filled in,
 * then the trailers that tie the commit to the triggered event, always (`git log --format=%(trailers)` finds them;
 * a restarted service will use them to recognise its own commits). A label the event does not carry is empty.
 */
export function deploymentCommitMessage(
  event: TriggeredEvent<unknown>,
  image: string,
  changed: ChangedFile[],
  template: string = DEFAULT_COMMIT_MESSAGE,
): string {
  const { project, stage, service, labels } = event.scope;
  const fields: Record<(typeof COMMIT_MESSAGE_FIELDS)[number], string> = {
    project,
    stage,
    service,
    image,
    file: changed.map((f) => f.file).join(", "),
    // One file: its changes; several: each change with its file in front.
    changes: changed
      .flatMap((f) =>
        f.changes.map((change) => (changed.length > 1 ? `  ${f.file}: ${change}` : `  ${change}`)),
      )
      .join("\n"),
    shkeptncontext: event.shkeptncontext,
    triggeredid: event.id,
  };
  const body = template.replace(PLACEHOLDER, (_, name: string) =>
    name.startsWith("labels.")
      ? (labels?.[name.slice("labels.".length)] ?? "")
      : (fields[name as keyof typeof fields] ?? ""),
  );
  return [
    body.trimEnd(),
    "",
    `Keptn-Context: ${event.shkeptncontext}`,
    `Keptn-Triggered-Id: ${event.id}`,
    "",
  ].join("\n");
}

/**
 * The message of one commit holding several deployments, made from the message of each (`deploymentCommitMessage`):
 * a subject that counts them, each message without its trailers as an item (subject after `* `, the rest indented),
 * then the trailers of all of them in order, one `Keptn-Context` / `Keptn-Triggered-Id` pair per deployment.
 */
export function groupCommitMessage(messages: string[]): string {
  const parts = messages.map((message) => {
    const text = message.trimEnd();
    const split = text.lastIndexOf("\n\n");
    return split < 0
      ? { body: text, trailers: "" }
      : { body: text.slice(0, split), trailers: text.slice(split + 2) };
  });
  const items = parts.map(({ body }) => {
    const [subject = "", ...rest] = body.split("\n");
    return [`* ${subject}`, ...rest.map((line) => (line ? `  ${line}` : ""))].join("\n");
  });
  return [
    `Deploy ${messages.length} changes from Keptn`,
    "",
    items.join("\n\n"),
    "",
    parts
      .map(({ trailers }) => trailers)
      .filter(Boolean)
      .join("\n"),
    "",
  ].join("\n");
}
