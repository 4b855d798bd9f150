import type {
  CustomObjectsApi,
  KubeConfig,
  KubernetesListObject,
  KubernetesObject,
  ListWatch,
} from "@kubernetes/client-node";
import type * as k8sModule from "@kubernetes/client-node";
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

type ClientNode = typeof k8sModule;

/**
 * client-node is large (about 60 MiB of resident memory once loaded, most of the service's idle footprint), so it
 * is loaded when a Flux cluster is configured, not for Argo CD alone.
 */
let clientNode: Promise<ClientNode> | undefined;

/** client-node with the cluster's kubeconfig loaded. */
interface Connected {
  k8s: ClientNode;
  api: CustomObjectsApi;
  config: KubeConfig;
  server: string;
}

/** Reads Flux objects and asks for reconciles through the Kubernetes API (`@kubernetes/client-node`). */
export class FluxClient {
  private connecting: Promise<Connected> | undefined;
  private connected: Connected | undefined;

  constructor(private readonly options: FluxClientOptions) {}

  /**
   * Loads client-node and the kubeconfig (the pod's service account without one). The service calls it at start,
   * so that a kubeconfig that cannot be read stops the start; every call waits for it.
   */
  connect(): Promise<Connected> {
    return (this.connecting ??= (async () => {
      const k8s = await (clientNode ??= import("@kubernetes/client-node"));
      const config = new k8s.KubeConfig();
      // src/config has checked that there is a kubeconfig or an in-cluster service account
      if (this.options.kubeconfig) config.loadFromFile(this.options.kubeconfig);
      else config.loadFromCluster();
      if (this.options.context) config.setCurrentContext(this.options.context);
      const server = config.getCurrentCluster()?.server ?? "the in-cluster API server";
      this.connected = { k8s, config, server, api: config.makeApiClient(k8s.CustomObjectsApi) };
      return this.connected;
    })());
  }

  /** One object as the API server has it; the caller parses it. */
  async read(kind: FluxKind, namespace: string, name: string): Promise<unknown> {
    return this.call("read", kind, namespace, name, ({ api }) =>
      api.getNamespacedCustomObject({ ...KINDS[kind], namespace, name }),
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
   * Only after `connect()`.
   */
  listWatch(kind: FluxKind, namespace: string): ListWatch<KubernetesObject> {
    if (!this.connected)
      throw new Error(`connect() the client of flux cluster ${this.options.cluster} first`);
    const { k8s, config } = this.connected;
    const { group, version, plural } = KINDS[kind];
    const list = () =>
      this.call("list", kind, namespace, "*", ({ api }) =>
        api.listNamespacedCustomObject({ group, version, namespace, plural }),
      ) as Promise<KubernetesListObject<KubernetesObject>>;
    return new k8s.ListWatch(
      `/apis/${group}/${version}/namespaces/${namespace}/${plural}`,
      new k8s.Watch(config),
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
    await this.call("patch", kind, namespace, name, ({ api, k8s }) =>
      api.patchNamespacedCustomObject(
        {
          ...KINDS[kind],
          namespace,
          name,
          body: { metadata: { annotations: { "reconcile.fluxcd.io/requestedAt": requestedAt } } },
        },
        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
      ),
    );
    return requestedAt;
  }

  private async call<T>(
    verb: string,
    kind: string,
    namespace: string,
    name: string,
    call: (connected: Connected) => Promise<T>,
  ): Promise<T> {
    const connected = await this.connect();
    try {
      return await call(connected);
    } catch (error) {
      throw this.failure(connected, error, `${verb} ${kind} ${namespace}/${name}`);
    }
  }

  private failure({ k8s, server }: Connected, error: unknown, what: string): Error {
    const where = `the Kubernetes API of flux cluster ${this.options.cluster} (${server})`;
    if (!(error instanceof k8s.ApiException)) {
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
