import {
  ApiException,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";
import { RetryableError, TerminalError } from "../../shared/errors.js";
import { kustomizationSchema, sourceSchema, type FluxSource, type Kustomization } from "./flux-objects.js";

export interface FluxClientOptions {
  /** The cluster's name in the configuration, for messages. */
  cluster: string;
  /** A kubeconfig file; the in-cluster service account when absent. */
  kubeconfig?: string;
  context?: string;
}

/** API group, version and plural of the Flux kinds the tracker reads. */
const KINDS = {
  Kustomization: { group: "kustomize.toolkit.fluxcd.io", version: "v1", plural: "kustomizations" },
  GitRepository: { group: "source.toolkit.fluxcd.io", version: "v1", plural: "gitrepositories" },
  OCIRepository: { group: "source.toolkit.fluxcd.io", version: "v1", plural: "ocirepositories" },
  Bucket: { group: "source.toolkit.fluxcd.io", version: "v1", plural: "buckets" },
} as const;
export type FluxKind = keyof typeof KINDS;

/** Reads Flux objects and asks for reconciles through the Kubernetes API (`@kubernetes/client-node`). */
export class FluxClient {
  private readonly api: CustomObjectsApi;
  private readonly server: string;

  constructor(private readonly options: FluxClientOptions) {
    const config = new KubeConfig();
    // Without a kubeconfig the pod's service account; src/config has checked that there is one.
    if (options.kubeconfig) config.loadFromFile(options.kubeconfig);
    else config.loadFromCluster();
    if (options.context) config.setCurrentContext(options.context);
    this.server = config.getCurrentCluster()?.server ?? "the in-cluster API server";
    this.api = config.makeApiClient(CustomObjectsApi);
  }

  async kustomization(namespace: string, name: string): Promise<Kustomization> {
    const body = await this.call("read", "Kustomization", namespace, name, () =>
      this.api.getNamespacedCustomObject({ ...KINDS.Kustomization, namespace, name }),
    );
    const parsed = kustomizationSchema.safeParse(body);
    if (!parsed.success) {
      throw new TerminalError(
        `Kustomization ${namespace}/${name} has a shape this service does not understand: ${parsed.error.issues[0]?.message ?? "?"}`,
      );
    }
    return parsed.data;
  }

  async source(kind: string, namespace: string, name: string): Promise<FluxSource | undefined> {
    if (!(kind in KINDS) || kind === "Kustomization") return undefined;
    const body = await this.call("read", kind, namespace, name, () =>
      this.api.getNamespacedCustomObject({ ...KINDS[kind as FluxKind], namespace, name }),
    );
    const parsed = sourceSchema.safeParse(body);
    return parsed.success ? parsed.data : undefined;
  }

  /**
   * What `flux reconcile` does: a merge patch of `reconcile.fluxcd.io/requestedAt`, which the controller echoes in
   * `status.lastHandledReconcileAt`. Returns the value written.
   */
  async requestReconcile(kind: FluxKind, namespace: string, name: string, at = new Date()): Promise<string> {
    const requestedAt = at.toISOString();
    await this.call("patch", kind, namespace, name, () =>
      this.api.patchNamespacedCustomObject(
        {
          ...KINDS[kind],
          namespace,
          name,
          body: { metadata: { annotations: { "reconcile.fluxcd.io/requestedAt": requestedAt } } },
        },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      ),
    );
    return requestedAt;
  }

  private async call<T>(
    verb: string,
    kind: string,
    namespace: string,
    name: string,
    call: () => Promise<T>,
  ): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw this.failure(error, `${verb} ${kind} ${namespace}/${name}`);
    }
  }

  private failure(error: unknown, what: string): Error {
    const where = `the Kubernetes API of flux cluster ${this.options.cluster} (${this.server})`;
    if (!(error instanceof ApiException)) {
      return new RetryableError(`${where} did not answer (${what}): ${(error as Error).message}`, {
        cause: error,
      });
    }
    const code = error.code;
    const said = statusMessage(error.body);
    if (code === 401)
      return new TerminalError(
        `${where} rejected the credentials (401) to ${what}; check flux.clusters.${this.options.cluster}`,
      );
    if (code === 403)
      return new TerminalError(
        `${where} forbids the service to ${what} (403: ${said}); grant it get and patch on Flux objects`,
      );
    if (code === 404)
      return new TerminalError(
        `${where} has no ${what.replace(/^\w+ /, "")} (404); check the target's deploy.name and deploy.namespace`,
      );
    if (code === 429 || code >= 500)
      return new RetryableError(`${where} answered ${code} to ${what}: ${said}`);
    return new TerminalError(`${where} refused to ${what} (${code}: ${said})`);
  }
}

/** The message of a Kubernetes `Status` body, or the start of whatever came. */
function statusMessage(body: unknown): string {
  if (typeof body === "string") {
    try {
      return statusMessage(JSON.parse(body));
    } catch {
      return body.slice(0, 200);
    }
  }
  if (body && typeof body === "object" && "message" in body && typeof body.message === "string")
    return body.message;
  return JSON.stringify(body)?.slice(0, 200) ?? "no body";
}
