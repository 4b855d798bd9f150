import { z } from "zod";

const stringList = z
  .array(z.string())
  .nullish()
  .transform((v) => v ?? []);

/**
 * `data` of `sh.keptn.event.deployment.triggered` (keptn/spec cloudevents.md, go-utils `DeploymentTriggeredEventData`).
 * Tolerant as Keptn was: `null` arrays, an empty strategy (a sequence triggered from the CLI), extra fields such as
 * `temporaryData`.
 */
export const deploymentTriggeredDataSchema = z.looseObject({
  configurationChange: z
    .looseObject({ values: z.record(z.string(), z.unknown()).nullish() })
    .nullish()
    .transform((v) => ({ values: v?.values ?? {} })),
  deployment: z
    .looseObject({
      deploymentURIsLocal: stringList,
      deploymentURIsPublic: stringList,
      deploymentstrategy: z
        .string()
        .nullish()
        .transform((v) => v ?? ""),
    })
    .nullish()
    .transform((v) => v ?? { deploymentURIsLocal: [], deploymentURIsPublic: [], deploymentstrategy: "" }),
});

export type DeploymentTriggeredData = z.infer<typeof deploymentTriggeredDataSchema>;

/** `data.deployment` of `sh.keptn.event.deployment.finished` (spec 0.2.4 incl. `gitCommit`). */
export interface DeploymentFinishedData {
  deploymentstrategy: string;
  deploymentNames: string[];
  deploymentURIsLocal: string[];
  deploymentURIsPublic: string[];
  gitCommit: string;
}
