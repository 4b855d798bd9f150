import { z } from "zod";
import { durationSchema } from "../shared/duration.js";

/**
 * Where a secret comes from. Secrets never sit in the YAML itself: only the name of an environment variable or
 * the path of a file (a mounted Kubernetes Secret) does.
 */
const secretRefSchema = z.union(
  [z.strictObject({ fromEnv: z.string().min(1) }), z.strictObject({ fromFile: z.string().min(1) })],
  { error: "give the secret as { fromEnv: VARIABLE } or { fromFile: /path }; secrets never go in this file" },
);
export type SecretRef = z.infer<typeof secretRefSchema>;

const nameSchema = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, "use lowercase letters, digits and dashes");

/** A project/stage/service pattern: `*` matches any run of characters. */
const patternSchema = z.string().min(1).default("*");

const repositorySchema = z.strictObject({
  name: nameSchema,
  url: z
    .string()
    .regex(/^(https?|file):\/\//, "use an http(s):// or file:// URL")
    .refine((url) => !/^[a-z]+:\/\/[^/]*@/i.test(url), "put credentials in auth.token, not in the URL"),
  branch: z.string().min(1).default("main"),
  auth: z
    .strictObject({
      username: z.string().min(1).default("x-access-token"),
      token: secretRefSchema,
    })
    .optional(),
});

const argoCdServerSchema = z.strictObject({
  name: nameSchema,
  url: z.string().regex(/^https?:\/\//, "use an http(s):// URL"),
  token: secretRefSchema,
  /** How often an in-flight deployment reads its application. */
  pollInterval: durationSchema.refine((ms) => ms >= 50, 'poll at most every 50ms (e.g. "2s")').default(2_000),
  /** Timeout of one HTTP request (a `?refresh=` GET blocks until Argo CD has compared). */
  requestTimeout: durationSchema.default(60_000),
  /** One watch stream (`/api/v1/stream/applications`) for every in-flight deployment on this server. */
  watch: z.boolean().default(true),
  /** How often an in-flight deployment still reads its application while the watch stream is up. */
  watchPollInterval: durationSchema
    .refine((ms) => ms >= 50, 'poll at most every 50ms (e.g. "30s")')
    .default(30_000),
});

const fluxClusterSchema = z.strictObject({
  name: nameSchema,
  /** A kubeconfig file; without it, the in-cluster service account of the pod the service runs in. */
  kubeconfig: z.string().min(1).optional(),
  /** The kubeconfig context to use; its current context when absent. */
  context: z.string().min(1).optional(),
  /** How often an in-flight deployment reads its Flux object (while the watch is down, or without one). */
  pollInterval: durationSchema.refine((ms) => ms >= 50, 'poll at most every 50ms (e.g. "2s")').default(2_000),
  /** One list-and-watch per kind and namespace feeds every in-flight deployment on the cluster. */
  watch: z.boolean().default(true),
  /** How often an in-flight deployment still reads its object while the watch is up: a safety net only. */
  watchPollInterval: durationSchema
    .refine((ms) => ms >= 50, 'poll at most every 50ms (e.g. "30s")')
    .default(30_000),
  /**
   * A notification-controller Receiver to call after a push instead of patching `reconcile.fluxcd.io/requestedAt`
   * (the service then needs no `patch` permission). The URL holds the Receiver's secret digest.
   */
  receiver: z.strictObject({ url: secretRefSchema, hmacKey: secretRefSchema.optional() }).optional(),
});

/** Where the image of `configurationChange.values.image` goes in a Helm values file: key paths such as `image.tag`. */
const helmValuesChangeSchema = z
  .strictObject({
    kind: z.literal("helm-values"),
    /** Key path that gets the whole reference, e.g. `image` for `image: repo/name:tag`. */
    reference: z.string().min(1).optional(),
    repository: z.string().min(1).optional(),
    tag: z.string().min(1).optional(),
  })
  .refine((c) => c.reference || c.tag, {
    message: "name where the image goes: `tag` (with `repository` if wanted) or `reference`",
  });

const manifestImageChangeSchema = z.strictObject({
  kind: z.literal("manifest-image"),
  /** Container name; without it, every container whose image has the same repository as the new image. */
  container: z.string().min(1).optional(),
});

export const changeSchema = z.discriminatedUnion("kind", [helmValuesChangeSchema, manifestImageChangeSchema]);
export type ChangeSpec = z.infer<typeof changeSchema>;

const argoCdDeploySchema = z.strictObject({
  tool: z.literal("argocd"),
  server: nameSchema,
  /** Application name template with {project}, {stage}, {service}. */
  application: z.string().min(1).default("{service}-{stage}"),
  /** Sent as `appNamespace` when the application lives outside Argo CD's own namespace. */
  appNamespace: z.string().min(1).optional(),
});

const fluxDeploySchema = z.strictObject({
  tool: z.literal("flux"),
  cluster: nameSchema,
  /**
   * The Flux object that applies the changed file: a Kustomization, or a HelmRelease whose chart comes from the
   * GitOps repository with `reconcileStrategy: Revision` (its chart version then names the commit).
   */
  kind: z
    .enum(["Kustomization", "HelmRelease"], { error: 'deploy.kind is "Kustomization" or "HelmRelease"' })
    .default("Kustomization"),
  /** Object name template with {project}, {stage}, {service}. */
  name: z.string().min(1).default("{service}-{stage}"),
  namespace: z.string().min(1).default("flux-system"),
});

const deploySchema = z.discriminatedUnion("tool", [argoCdDeploySchema, fluxDeploySchema], {
  error: 'deploy.tool is "argocd" or "flux"',
});

const targetSchema = z.strictObject({
  match: z
    .strictObject({ project: patternSchema, stage: patternSchema, service: patternSchema })
    .default({ project: "*", stage: "*", service: "*" }),
  repository: nameSchema,
  /** Path of the file to change, a template with {project}, {stage}, {service}. */
  file: z.string().min(1),
  change: changeSchema,
  deploy: deploySchema,
  /** From deployment.triggered received to deployment.finished sent. */
  timeout: durationSchema.default(600_000),
  /** `deploymentURIsLocal` / `deploymentURIsPublic` templates; the triggered event's URIs are used when absent. */
  uris: z
    .strictObject({ local: z.array(z.string()).optional(), public: z.array(z.string()).optional() })
    .optional(),
});
export type TargetConfig = z.infer<typeof targetSchema>;

export const fileConfigSchema = z.strictObject({
  integration: z
    .strictObject({ name: nameSchema.default("gitops-service") })
    .default({ name: "gitops-service" }),
  nats: z
    .strictObject({ url: z.string().min(1).default("nats://keptn-nats:4222") })
    .default({ url: "nats://keptn-nats:4222" }),
  http: z
    .strictObject({
      host: z.string().default("0.0.0.0"),
      port: z.number().int().min(0).max(65535).default(8080),
    })
    .default({ host: "0.0.0.0", port: 8080 }),
  log: z
    .strictObject({ level: z.enum(["trace", "debug", "info", "warn", "error"]).default("info") })
    .default({ level: "info" }),
  git: z
    .strictObject({
      cacheDir: z.string().min(1).default("/tmp/keptn-gitops/repos"),
      author: z
        .strictObject({ name: z.string().min(1), email: z.string().min(3) })
        .default({ name: "Keptn GitOps Service", email: "keptn-gitops@localhost" }),
      /** Push attempts when the branch moved under us (fetch, re-apply, push again). */
      pushAttempts: z.number().int().min(1).max(20).default(5),
      /** Timeout of one git command. */
      commandTimeout: durationSchema.default(60_000),
    })
    .default({
      cacheDir: "/tmp/keptn-gitops/repos",
      author: { name: "Keptn GitOps Service", email: "keptn-gitops@localhost" },
      pushAttempts: 5,
      commandTimeout: 60_000,
    }),
  repositories: z
    .array(repositorySchema)
    .default([])
    .refine((l) => l.length > 0, "configure at least one repository"),
  /**
   * Notification receivers on the HTTP server. A notification only makes the waiting deployments read the tool's
   * API at once; the API decides. Each receiver is off until its secret is configured.
   */
  webhooks: z
    .strictObject({
      /** Bodies over this size are refused with 413. */
      maxBodyBytes: z
        .number()
        .int()
        .min(1024)
        .max(16 * 1024 * 1024)
        .default(1024 * 1024),
      /**
       * `POST /webhooks/flux`: a Flux notification-controller Provider of type generic-hmac with `hmacKey`, or of
       * type generic sending `Authorization: Bearer <token>` from its Secret's `headers`.
       */
      flux: z
        .strictObject({ hmacKey: secretRefSchema.optional(), token: secretRefSchema.optional() })
        .refine((flux) => flux.hmacKey || flux.token, {
          message: "give hmacKey (generic-hmac Provider), token (generic Provider with a header), or both",
        })
        .optional(),
      /** `POST /webhooks/argocd`: an Argo CD Notifications webhook sending `Authorization: Bearer <token>`. */
      argocd: z.strictObject({ token: secretRefSchema }).optional(),
    })
    .default({ maxBodyBytes: 1024 * 1024 }),
  argocd: z.strictObject({ servers: z.array(argoCdServerSchema) }).default({ servers: [] }),
  flux: z.strictObject({ clusters: z.array(fluxClusterSchema) }).default({ clusters: [] }),
  targets: z
    .array(targetSchema)
    .default([])
    .refine((l) => l.length > 0, "configure at least one target"),
});

export type FileConfig = z.infer<typeof fileConfigSchema>;
export type RepositoryConfig = z.infer<typeof repositorySchema>;
export type ArgoCdServerConfig = z.infer<typeof argoCdServerSchema>;
export type FluxClusterConfig = z.infer<typeof fluxClusterSchema>;
