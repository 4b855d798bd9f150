import { z } from "zod";
import { COMMIT_MESSAGE_FIELDS, unknownPlaceholders } from "../deployments/commit-message.js";
import { pullRequestConfigSchema, targetPullRequestSchema } from "../gitops-repo/pull-requests/schema.js";
import { durationSchema } from "../shared/duration.js";
import { secretRefSchema } from "./secret-ref.js";

export { secretRefSchema, type SecretRef } from "./secret-ref.js";

const nameSchema = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, "use lowercase letters, digits and dashes");

/** A project/stage/service pattern: `*` matches any run of characters. */
const patternSchema = z.string().min(1).default("*");

/** `ssh://[user@]host[:port]/path`, or git's scp-like `[user@]host:path` (e.g. `git@github.com:org/repo.git`). */
export function isSshUrl(url: string): boolean {
  return /^ssh:\/\//i.test(url) || /^([^@/:\s]+@)?[^@/:\s]+:(?!\/\/)/.test(url);
}

/** A private key and the host keys to trust, for `ssh://` and `git@host:path` URLs. */
const sshAuthSchema = z
  .strictObject({
    /** The private key file's text (OpenSSH or PEM), without a passphrase. */
    privateKey: secretRefSchema,
    /** known_hosts lines of the git host, e.g. the output of `ssh-keyscan -p <port> <host>`. */
    knownHosts: secretRefSchema.optional(),
    /** Refuse a host whose key is not in `knownHosts` (or has changed). */
    strictHostKeyChecking: z.boolean().default(true),
  })
  .refine((ssh) => ssh.knownHosts || !ssh.strictHostKeyChecking, {
    message:
      "give knownHosts (the lines ssh-keyscan -p <port> <host> prints), or set strictHostKeyChecking: false to trust any host key",
    path: ["knownHosts"],
  });

/**
 * A GitHub App installation: the app's key makes installation tokens (about an hour each, renewed before they
 * expire), used for git over HTTPS and for pull requests.
 */
const githubAppSchema = z.strictObject({
  /** The app's numeric ID, or its client ID (`Iv1.…`). */
  appId: z.union([z.number().int().positive(), z.string().min(1)]),
  /** The installation on the account or organization that owns the repository (its settings URL ends in it). */
  installationId: z.union([z.number().int().positive(), z.string().regex(/^\d+$/, "a number")]),
  /** The app's private key (PEM, as GitHub hands it out). */
  privateKey: secretRefSchema,
  /** `https://api.github.com` by default; GitHub Enterprise Server: `https://<host>/api/v3`. */
  apiUrl: z.url({ protocol: /^https?$/, error: "give the API root as an http(s) URL" }).optional(),
});

/** How the service authenticates to the git host: a token over HTTPS, a GitHub App, or an SSH key. */
const repositoryAuthSchema = z
  .strictObject({
    /** HTTPS: the user name sent with the token; "x-access-token" when absent. */
    username: z.string().min(1).optional(),
    token: secretRefSchema.optional(),
    /**
     * HTTPS: how the token is sent: `basic` (HTTP Basic with username, what GitHub and GitLab take) or `bearer`
     * (`Authorization: Bearer <token>`, e.g. Bitbucket and Azure DevOps access tokens).
     */
    scheme: z.enum(["basic", "bearer"], { error: 'auth.scheme is "basic" or "bearer"' }).optional(),
    ssh: sshAuthSchema.optional(),
    githubApp: githubAppSchema.optional(),
  })
  .superRefine((auth, context) => {
    const given = [auth.token && "token", auth.ssh && "ssh", auth.githubApp && "githubApp"].filter(Boolean);
    if (given.length > 1) {
      context.addIssue({
        code: "custom",
        message: `give one of token (https:// URLs), githubApp (https:// URLs on GitHub) or ssh (ssh:// and git@host:path URLs), not ${given.join(" and ")}`,
      });
    } else if (given.length === 0) {
      context.addIssue({
        code: "custom",
        message:
          "give token (https:// URLs), githubApp (https:// URLs on GitHub) or ssh (ssh:// and git@host:path URLs)",
      });
    }
    if (auth.githubApp && (auth.username || auth.scheme)) {
      context.addIssue({
        code: "custom",
        message:
          "a GitHub App's token is sent as x-access-token with HTTP Basic; remove auth.username and auth.scheme",
      });
    }
    if (auth.ssh && auth.scheme) {
      context.addIssue({
        code: "custom",
        message: "auth.scheme is for tokens over https://; remove it with ssh",
        path: ["scheme"],
      });
    }
    if (auth.scheme === "bearer" && auth.username) {
      context.addIssue({
        code: "custom",
        message: "a bearer token is sent without a user name; remove auth.username",
        path: ["username"],
      });
    }
    if (auth.ssh && auth.username) {
      context.addIssue({
        code: "custom",
        message: "with ssh the user name is part of the URL (ssh://git@host/path); remove auth.username",
        path: ["username"],
      });
    }
  });

const repositorySchema = z.strictObject({
  name: nameSchema,
  url: z
    .string()
    .refine(
      (url) => /^(https?|file):\/\//.test(url) || isSshUrl(url),
      "use an http(s)://, file://, ssh:// or git@host:path URL",
    )
    .refine(
      (url) => isSshUrl(url) || !/^[a-z]+:\/\/[^/]*@/i.test(url),
      "put credentials in auth.token, not in the URL",
    )
    .refine(
      (url) => !/^ssh:\/\/[^/@]*:[^/@]*@/i.test(url),
      "an SSH URL takes a user name only (ssh://git@host/path); the key goes in auth.ssh.privateKey",
    ),
  branch: z.string().min(1).default("main"),
  auth: repositoryAuthSchema.optional(),
  /**
   * Signs every commit: `ssh` with an SSH private key (git's `gpg.format ssh`), `openpgp` with an armored OpenPGP
   * secret key (gpg). Keys without a passphrase.
   */
  signing: z
    .strictObject({
      format: z.enum(["ssh", "openpgp"], { error: 'signing.format is "ssh" or "openpgp"' }),
      key: secretRefSchema,
    })
    .optional(),
  /** Deploy through pull requests (GitHub) or merge requests (GitLab) instead of pushing to `branch`. */
  pullRequest: pullRequestConfigSchema.optional(),
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

/** A key path: keys joined by dots (`image.tag`); a number selects a list item (`images.0.tag`). */
const keyPathSchema = z
  .string()
  .regex(/^[^.]+(\.[^.]+)*$/, "write a key path as keys joined by dots, e.g. image.tag");

/** Key paths that get parts of the image of `configurationChange.values.image`. */
const imageKeysShape = {
  /** Gets the whole reference, e.g. `image` for `image: repo/name:tag`. */
  reference: keyPathSchema.optional(),
  /** Gets the registry host; `repository` then gets the path on the registry only. */
  registry: keyPathSchema.optional(),
  repository: keyPathSchema.optional(),
  tag: keyPathSchema.optional(),
  /** Gets the digest (`sha256:...`), or "" when the image has none. */
  digest: keyPathSchema.optional(),
};
type ImageKeysInput = {
  reference?: string;
  registry?: string;
  repository?: string;
  tag?: string;
  digest?: string;
};
const writesImage = (c: ImageKeysInput) => Boolean(c.reference || c.tag || c.digest);
const IMAGE_KEYS_MESSAGE = "name where the image goes: `tag` (with `repository` if wanted) or `reference`";
const registryHasRepository = (c: ImageKeysInput) => !c.registry || Boolean(c.repository);
const REGISTRY_MESSAGE = "`registry` gets the registry split out of the repository: give `repository` too";

/** Where the image goes in a Helm values file: key paths such as `image.tag`. */
const helmValuesChangeSchema = z
  .strictObject({ kind: z.literal("helm-values"), ...imageKeysShape })
  .refine(writesImage, { message: IMAGE_KEYS_MESSAGE })
  .refine(registryHasRepository, { message: REGISTRY_MESSAGE, path: ["registry"] });

const manifestImageChangeSchema = z.strictObject({
  kind: z.literal("manifest-image"),
  /** Container name; without it, every container whose image has the same repository as the new image. */
  container: z.string().min(1).optional(),
});

/** An `images:` entry of a kustomization.yaml (`newName`, `newTag`, `digest`), added when missing. */
const kustomizeImagesChangeSchema = z.strictObject({
  kind: z.literal("kustomize-images"),
  /** The `images[].name` to set; the image's repository when absent. */
  name: z.string().min(1).optional(),
});

/** Key paths below `spec.values` of a Flux HelmRelease. */
const helmReleaseValuesChangeSchema = z
  .strictObject({
    kind: z.literal("helmrelease-values"),
    /** `metadata.name` of the HelmRelease, when the file holds several. */
    name: z.string().min(1).optional(),
    ...imageKeysShape,
  })
  .refine(writesImage, { message: IMAGE_KEYS_MESSAGE })
  .refine(registryHasRepository, { message: REGISTRY_MESSAGE, path: ["registry"] });

/** Key paths below `helm.valuesObject`, or names of `helm.parameters`, of an Argo CD Application's source. */
const argoCdApplicationChangeSchema = z
  .strictObject({
    kind: z.literal("argocd-application"),
    /** `metadata.name` of the Application, when the file holds several. */
    name: z.string().min(1).optional(),
    /** Which of `spec.sources` (multi-source apps): the one with this `repoURL` or this `name`. */
    source: z
      .strictObject({ repoURL: z.string().min(1).optional(), name: z.string().min(1).optional() })
      .refine((s) => s.repoURL || s.name, { message: "choose the source by repoURL or by name" })
      .optional(),
    /** `valuesObject` (the default): the keys are key paths; `parameters`: the keys are parameter names. */
    into: z
      .enum(["valuesObject", "parameters"], { error: 'change.into is "valuesObject" or "parameters"' })
      .optional(),
    ...imageKeysShape,
  })
  .refine(writesImage, { message: IMAGE_KEYS_MESSAGE })
  .refine(registryHasRepository, { message: REGISTRY_MESSAGE, path: ["registry"] });

/** `configurationChange.values` of the triggered event, deep-merged into a values file. */
const valuesMergeChangeSchema = z.strictObject({
  kind: z.literal("values-merge"),
  /** Merge `image` too; by default it is left out (another target or kind writes it). */
  keepImage: z.boolean({ error: "keepImage is true or false" }).optional(),
});

export const changeSchema = z.discriminatedUnion(
  "kind",
  [
    helmValuesChangeSchema,
    manifestImageChangeSchema,
    kustomizeImagesChangeSchema,
    helmReleaseValuesChangeSchema,
    argoCdApplicationChangeSchema,
    valuesMergeChangeSchema,
  ],
  {
    error:
      "change.kind is one of helm-values, manifest-image, kustomize-images, helmrelease-values, argocd-application, values-merge",
  },
);
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

const targetSchema = z
  .strictObject({
    match: z
      .strictObject({ project: patternSchema, stage: patternSchema, service: patternSchema })
      .default({ project: "*", stage: "*", service: "*" }),
    repository: nameSchema,
    /** Path of the file to change, a template with {project}, {stage}, {service}. */
    file: z.string().min(1).optional(),
    change: changeSchema.optional(),
    /** Several files changed by one deployment, in one commit (instead of `file` and `change`). */
    files: z
      .array(z.strictObject({ file: z.string().min(1), change: changeSchema }))
      .min(1)
      .optional(),
    deploy: deploySchema,
    /** From deployment.triggered received to deployment.finished sent. */
    timeout: durationSchema.default(600_000),
    /** Fetch, edit and report the diff in deployment.finished, but commit and push nothing; `git.dryRun` when absent. */
    dryRun: z.boolean({ error: "dryRun is true or false" }).optional(),
    /** `deploymentURIsLocal` / `deploymentURIsPublic` templates; the triggered event's URIs are used when absent. */
    uris: z
      .strictObject({ local: z.array(z.string()).optional(), public: z.array(z.string()).optional() })
      .optional(),
    /** `false`: push to the branch even though the repository has `pullRequest`; or override its mode. */
    pullRequest: targetPullRequestSchema.optional(),
  })
  .superRefine((target, context) => {
    if (target.files && (target.file !== undefined || target.change !== undefined)) {
      context.addIssue({
        code: "custom",
        message: "give file and change, or files, not both",
        path: ["files"],
      });
    } else if (!target.files && (target.file === undefined || target.change === undefined)) {
      context.addIssue({
        code: "custom",
        message: "give file and change (one file), or files: [{ file, change }, ...] (several in one commit)",
        path: [target.file === undefined ? "file" : "change"],
      });
    }
  });
export type TargetConfig = z.infer<typeof targetSchema>;

export const fileConfigSchema = z.strictObject({
  integration: z
    .strictObject({ name: nameSchema.default("gitops-service") })
    .default({ name: "gitops-service" }),
  /** Keptn itself, as users see it: `bridgeUrl` makes the Keptn context in a pull request a link to the sequence. */
  keptn: z
    .strictObject({
      bridgeUrl: z.url({ protocol: /^https?$/, error: "give the Bridge as an http(s) URL" }).optional(),
    })
    .default({}),
  nats: z
    .strictObject({
      url: z.string().min(1).default("nats://keptn-nats:4222"),
      /**
       * `auto`: triggered events from the control plane's JetStream stream when the server has it (a durable
       * consumer: events sent while the service is down wait for it), else core NATS (at most once). `jetstream`
       * requires the stream; `core` never uses it.
       */
      intake: z
        .enum(["auto", "jetstream", "core"], { error: 'nats.intake is "auto", "jetstream" or "core"' })
        .default("auto"),
      /** The stream Keptn's shipyard-controller keeps `sh.keptn.>` in. */
      stream: z.string().min(1).default("keptn"),
      /**
       * JetStream intake: a delivery not acknowledged within this (the replica that took it died before recording
       * it) is delivered again, to any replica.
       */
      ackWait: durationSchema.refine((ms) => ms >= 1_000, 'at least 1s (e.g. "30s")').default(30_000),
    })
    .default({ url: "nats://keptn-nats:4222", intake: "auto", stream: "keptn", ackWait: 30_000 }),
  /** Where the tasks in flight are recorded, so that they survive a crash and replicas share them. */
  state: z
    .strictObject({
      /** `auto`: a JetStream key-value bucket when the server has JetStream, else files in `dir`. */
      store: z
        .enum(["auto", "jetstream", "file"], { error: 'state.store is "auto", "jetstream" or "file"' })
        .default("auto"),
      /** The key-value bucket; `keptn-gitops-<integration.name>` when absent. */
      bucket: z
        .string()
        .regex(/^[A-Za-z0-9_-]+$/, "use letters, digits, - and _")
        .optional(),
      /** Copies of the bucket in a NATS cluster (1 for a single server). */
      replicas: z.number().int().min(1).max(5).default(1),
      /** The file store's directory (one replica only); `<git.cacheDir>/.state` when absent. */
      dir: z.string().min(1).optional(),
      /** This replica's name in the records; the host name when absent (in Kubernetes: the pod name). */
      replicaId: z.string().min(1).optional(),
      /** A replica that stops renewing its lease this long loses its tasks to another. */
      lease: durationSchema
        .refine((ms) => ms >= 100, 'a lease lasts at least 100ms (e.g. "30s")')
        .default(30_000),
      /** How long a finished task is remembered, so that a redelivery of its event is recognised. */
      doneRetention: durationSchema.default(24 * 3_600_000),
    })
    .default({
      store: "auto",
      replicas: 1,
      lease: 30_000,
      doneRetention: 86_400_000,
    }),
  /** On SIGTERM: how long running tasks may go on before they are handed over (their lease ended, no answer). */
  shutdown: z.strictObject({ gracePeriod: durationSchema.default(20_000) }).default({ gracePeriod: 20_000 }),
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
      /**
       * Most changes for one repository and branch that go into one commit and one push: the changes that queue
       * up while a commit is made are grouped. 1 commits each change alone.
       */
      maxChangesPerCommit: z.number().int().min(1).max(1000).default(50),
      /** Every target: fetch, edit and report the diff, but commit and push nothing (`targets[].dryRun` per target). */
      dryRun: z.boolean({ error: "git.dryRun is true or false" }).default(false),
      /** Timeout of one git command. */
      commandTimeout: durationSchema.default(60_000),
      /**
       * The commit message with {project}, {stage}, {service}, {image}, {file}, {changes}, {shkeptncontext},
       * {triggeredid} and {labels.<name>}; the Keptn trailers are always added after it.
       */
      commitMessage: z
        .string()
        .min(1)
        .superRefine((template, context) => {
          const unknown = unknownPlaceholders(template);
          if (unknown.length > 0) {
            context.addIssue({
              code: "custom",
              message: `unknown placeholder ${unknown.map((name) => `{${name}}`).join(", ")}; use ${COMMIT_MESSAGE_FIELDS.map((name) => `{${name}}`).join(", ")} or {labels.<name>}`,
            });
          }
        })
        .optional(),
    })
    .default({
      cacheDir: "/tmp/keptn-gitops/repos",
      author: { name: "Keptn GitOps Service", email: "keptn-gitops@localhost" },
      pushAttempts: 5,
      maxChangesPerCommit: 50,
      dryRun: false,
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
