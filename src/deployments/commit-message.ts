import type { TriggeredEvent } from "../keptn/cloud-event.js";

/**
 * The commit message of a deployment: what changed and why, with the Keptn trailers that tie the commit to the
 * triggered event (`git log --format=%(trailers)` finds them; a restarted service will use them to recognise its
 * own commits).
 */
export function deploymentCommitMessage(
  event: TriggeredEvent<unknown>,
  image: string,
  file: string,
  changes: string[],
): string {
  const { project, stage, service } = event.scope;
  return [
    `Deploy ${service} ${image} to ${project}/${stage}`,
    "",
    `Keptn asked for a deployment of service ${service} in stage ${stage} of project ${project}.`,
    `Changed in ${file}:`,
    ...changes.map((change) => `  ${change}`),
    "",
    `Keptn-Context: ${event.shkeptncontext}`,
    `Keptn-Triggered-Id: ${event.id}`,
    "",
  ].join("\n");
}
