import { z } from "zod";

/** metav1.Condition as Flux writes it. */
const conditionSchema = z.looseObject({
  type: z.string(),
  status: z.string(),
  reason: z.string().optional(),
  message: z.string().optional(),
  observedGeneration: z.number().optional(),
});
export type FluxCondition = z.infer<typeof conditionSchema>;

/** The parts of a Kustomization (kustomize.toolkit.fluxcd.io/v1) the tracker reads. */
export const kustomizationSchema = z.looseObject({
  metadata: z.looseObject({
    name: z.string(),
    namespace: z.string().optional(),
    generation: z.number().optional(),
  }),
  spec: z.looseObject({
    sourceRef: z.looseObject({ kind: z.string(), name: z.string(), namespace: z.string().optional() }),
    suspend: z.boolean().optional(),
  }),
  status: z
    .looseObject({
      observedGeneration: z.number().optional(),
      lastAppliedRevision: z.string().optional(),
      lastAttemptedRevision: z.string().optional(),
      lastHandledReconcileAt: z.string().optional(),
      conditions: z.array(conditionSchema).optional(),
    })
    .optional(),
});
export type Kustomization = z.infer<typeof kustomizationSchema>;

/** The parts of a source (GitRepository, source.toolkit.fluxcd.io/v1) the tracker reads. */
export const sourceSchema = z.looseObject({
  metadata: z.looseObject({ name: z.string(), generation: z.number().optional() }),
  status: z
    .looseObject({
      artifact: z.looseObject({ revision: z.string().optional() }).optional(),
      conditions: z.array(conditionSchema).optional(),
    })
    .optional(),
});
export type FluxSource = z.infer<typeof sourceSchema>;

export function condition(
  object: { status?: { conditions?: FluxCondition[] | undefined } | undefined },
  type: string,
): FluxCondition | undefined {
  return object.status?.conditions?.find((c) => c.type === type);
}
