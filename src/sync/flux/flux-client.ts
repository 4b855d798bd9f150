import {
  ApiException,
  CustomObjectsApi,
  KubeConfig,
  ListWatch,
  PatchStrategy,
  Watch,
  setHeaderOptions,
  type KubernetesListObject,
  type KubernetesObject,
} from "@kubernetes/client-node";
import { RetryableError, TerminalError } from "../../shared/errors.js";
import { sourceSchema, type FluxSource } from "./flux-objects.js";

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
  HelmRelease: { group: "helm.toolkit.fluxcd.io", version: "v2", plural: "helmreleases" },
  GitRepository: { group: "source.toolkit.fluxcd.io", version: "v1", plural: "gitrepositories" },
  OCIRepository: { group: "source.toolkit.fluxcd.io", version: "v1", plural: "ocirepositories" },
  Bucket: { group: "source.toolkit.fluxcd.io", version: "v1", plural: "buckets" },
} as const;
export type FluxKind = keyof typeof KINDS;
const SOURCE_KINDS = new Set<string>(["GitRepository", "OCIRepository", "Bucket"]);

export function isSourceKind(kind: string): kind is FluxKind {
  return SOURCE_KINDS.has(kind);
}

/** Reads Flux objects and asks for reconciles through the Kubernetes API (`@kubernetes/client-node`). */
export class FluxClient {
  private readonly api: CustomObjectsApi;
  private readonly config: KubeConfig;
  private readonly server: string;

  constructor(private readonly options: FluxClientOptions) {
    const config = (this.config = new KubeConfig());
    // Without a kubeconfig the pod's service account; src/config has checked that there is one.
    if (options.kubeconfig) config.loadFromFile(options.kubeconfig);
    else config.loadFromCluster();
    if (options.context) config.setCurrentContext(options.context);
    this.server = config.getCurrentCluster()?.server ?? "the in-cluster API server";
    this.api = config.makeApiClient(CustomObjectsApi);
  }

  /** One object as the API server has it; the caller parses it. */
  async read(kind: FluxKind, namespace: string, name: string): Promise<unknown> {
    return this.call("read", kind, namespace, name, () =>
      this.api.getNamespacedCustomObject({ ...KINDS[kind], namespace, name }),
    );
  }

  async source(kind: string, namespace: string, name: string): Promise<FluxSource | undefined> {
    if (!isSourceKind(kind)) return undefined;
    const parsed = sourceSchema.safeParse(await this.read(kind, namespace, name));
    return parsed.success ? parsed.data : undefined;
  }

  /**
   * client-node's list-then-watch of one kind in one namespace, not started: a list, then one watch from its
   * resourceVersion, resumed where it ended (a new list after 410 Gone). It stops on an error; the caller restarts it.
   */
  listWatch(kind: FluxKind, namespace: string): ListWatch<KubernetesObject> {
    const { group, version, plural } = KINDS[kind];
    const list = () =>
      this.call("list", kind, namespace, "*", () =>
        this.api.listNamespacedCustomObject({ group, version, namespace, plural }),
      ) as Promise<KubernetesListObject<KubernetesObject>>;
    return new ListWatch(
      `/apis/${group}/${version}/namespaces/${namespace}/${plural}`,
      new Watch(this.config),
      list,
      false,
    );
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
        `${where} forbids the service to ${what} (403: ${said}); grant it get, list, watch and patch on Flux objects (docs/configuration.md, flux.clusters)`,
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
