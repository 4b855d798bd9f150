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

/** Where a Flux object takes its artifact from. */
const sourceRefSchema = z.looseObject({
  kind: z.string(),
  name: z.string(),
  namespace: z.string().optional(),
});
export type FluxSourceRef = z.infer<typeof sourceRefSchema>;

/** The parts of a Kustomization (kustomize.toolkit.fluxcd.io/v1) the tracker reads. */
export const kustomizationSchema = z.looseObject({
  metadata: z.looseObject({
    name: z.string(),
    namespace: z.string().optional(),
    generation: z.number().optional(),
  }),
  spec: z.looseObject({
    sourceRef: sourceRefSchema,
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

/** The parts of a HelmRelease (helm.toolkit.fluxcd.io/v2) the tracker reads. */
export const helmReleaseSchema = z.looseObject({
  metadata: z.looseObject({
    name: z.string(),
    namespace: z.string().optional(),
    generation: z.number().optional(),
  }),
  spec: z.looseObject({
    /** A chart built by source-controller from a source; `chartRef` (an OCI or HelmChart reference) instead. */
    chart: z
      .looseObject({
        spec: z.looseObject({
          chart: z.string(),
          sourceRef: sourceRefSchema,
          reconcileStrategy: z.string().optional(),
        }),
      })
      .optional(),
    chartRef: sourceRefSchema.optional(),
    suspend: z.boolean().optional(),
  }),
  status: z
    .looseObject({
      observedGeneration: z.number().optional(),
      lastAttemptedRevision: z.string().optional(),
      lastHandledReconcileAt: z.string().optional(),
      conditions: z.array(conditionSchema).optional(),
      /** helm-controller's release snapshots, newest first. */
      history: z
        .array(
          z.looseObject({
            chartVersion: z.string().optional(),
            status: z.string().optional(),
            version: z.number().optional(),
          }),
        )
        .optional(),
    })
    .optional(),
});
export type HelmRelease = z.infer<typeof helmReleaseSchema>;

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
