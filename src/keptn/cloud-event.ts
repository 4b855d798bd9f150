import { z } from "zod";

/**
 * The structured-mode CloudEvent envelope as Keptn 0.8 – 1.4 put it on the wire (protocol.md §1–2). Two
 * serializers coexist: go-utils' `KeptnContextExtendedCE` (`contenttype`, an `extensions` object) and
 * cloudevents sdk-go (`datacontenttype`, Keptn attributes as top-level extensions). Both are accepted; unknown
 * fields are kept and ignored.
 */
const optionalString = z.string().nullish().catch(undefined);

export const keptnEnvelopeSchema = z.looseObject({
  id: z.string().min(1, "the event has no id"),
  type: z.string().min(1, "the event has no type"),
  shkeptncontext: z.string().min(1, "the event has no shkeptncontext"),
  // Read when usable, never a reason to drop an event that can be answered.
  specversion: optionalString,
  source: optionalString,
  time: optionalString,
  contenttype: optionalString,
  datacontenttype: optionalString,
  shkeptnspecversion: optionalString,
  triggeredid: optionalString,
  gitcommitid: optionalString,
  data: z.unknown(),
});

export type KeptnEnvelope = z.infer<typeof keptnEnvelopeSchema>;

/** Fields every Keptn event's data carries (go-utils `EventData`); `null` maps are read as empty. */
export const keptnEventDataSchema = z.looseObject({
  project: z
    .string()
    .nullish()
    .transform((v) => v ?? ""),
  stage: z
    .string()
    .nullish()
    .transform((v) => v ?? ""),
  service: z
    .string()
    .nullish()
    .transform((v) => v ?? ""),
  labels: z
    .record(z.string(), z.string())
    .nullish()
    .transform((v) => v ?? {}),
});

export type KeptnEventData = z.infer<typeof keptnEventDataSchema>;

export type TaskStatus = "succeeded" | "errored";
export type TaskResult = "pass" | "warning" | "fail";

/** A `<task>.triggered` event after parsing: envelope fields plus the typed data of its task. */
export interface TriggeredEvent<Data> {
  id: string;
  type: string;
  task: string;
  shkeptncontext: string;
  shkeptnspecversion?: string;
  gitcommitid?: string;
  scope: KeptnEventData;
  data: Data;
}
