import { z } from "zod";

/**
 * The parts of Argo CD's `v1alpha1Application` the tracker reads (assets/swagger.json; interfaces.md A1).
 * Every field is optional because Argo CD omits empty ones (`omitempty`), and unknown fields are kept.
 */
const revisionFields = { revision: z.string().optional(), revisions: z.array(z.string()).optional() };

export const applicationSchema = z.looseObject({
  metadata: z.looseObject({ name: z.string(), namespace: z.string().optional() }),
  spec: z
    .looseObject({
      // `automated.enabled: false` (Argo CD 3.x) keeps the policy but switches auto-sync off.
      syncPolicy: z
        .looseObject({ automated: z.looseObject({ enabled: z.boolean().optional() }).nullish() })
        .nullish(),
    })
    .optional(),
  operation: z.looseObject({ sync: z.looseObject(revisionFields).optional() }).nullish(),
  status: z
    .looseObject({
      sync: z.looseObject({ status: z.string().optional(), ...revisionFields }).optional(),
      health: z
        .looseObject({
          status: z.string().optional(),
          message: z.string().optional(),
          lastTransitionTime: z.string().optional(),
        })
        .optional(),
      operationState: z
        .looseObject({
          phase: z.string().optional(),
          message: z.string().optional(),
          retryCount: z.number().optional(),
          startedAt: z.string().optional(),
          finishedAt: z.string().optional(),
          operation: z.looseObject({ sync: z.looseObject(revisionFields).optional() }).optional(),
          syncResult: z
            .looseObject({
              ...revisionFields,
              resources: z
                .array(
                  z.looseObject({
                    kind: z.string().optional(),
                    name: z.string().optional(),
                    status: z.string().optional(),
                    message: z.string().optional(),
                  }),
                )
                .optional(),
            })
            .optional(),
        })
        .optional(),
      resources: z
        .array(
          z.looseObject({
            kind: z.string().optional(),
            name: z.string().optional(),
            health: z
              .looseObject({ status: z.string().optional(), message: z.string().optional() })
              .optional(),
          }),
        )
        .optional(),
      conditions: z
        .array(z.looseObject({ type: z.string().optional(), message: z.string().optional() }))
        .optional(),
    })
    .optional(),
});

export type Application = z.infer<typeof applicationSchema>;

/** Argo CD's error body (grpc-gateway `runtimeError`). */
export const argoErrorSchema = z.looseObject({
  code: z.number().optional(),
  error: z.string().optional(),
  message: z.string().optional(),
});
