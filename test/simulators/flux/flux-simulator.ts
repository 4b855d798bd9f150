import { execFile } from "node:child_process";
import { EventEmitter } from "node:events";
import { createHash, createHmac, randomUUID } from "node:crypto";
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { setTimeout as delay } from "node:timers/promises";
import { parseAllDocuments } from "yaml";
import { git, GitCommandError } from "../../support/gitops-fixture.js";

// A stand-in for kube-apiserver (the REST subset a Flux status client uses) plus source-controller and
// kustomize-controller. Statuses move in the order, with the messages, that the real controllers v1.9.6 write in
// the lab (docs/testing.md "Flux in the lab", test/lab/flux.real.spec.ts). Git is read from a real bare repository
// with the git CLI, so a revision is only reported once the commit really is there. See readme.md next to this file.

export interface SimulatedGitRepository {
  name: string;
  /** default "flux-system" */
  namespace?: string;
  /** filesystem path of the bare repository the simulator reads */
  gitDir: string;
  /** what `spec.url` reports; default `file://<gitDir>`. Failure messages quote it. */
  url?: string;
  /** `spec.ref.branch`, default "main" */
  branch?: string;
  /** `spec.interval` as a Go duration ("1h", "500ms"); default "1h", as in the lab */
  interval?: string;
  /** `spec.secretRef.name`, reported only */
  secretRef?: string;
  /** the git server refuses the credentials (also settable later with `refuseGitAuth`) */
  authRefused?: boolean;
}

export interface SimulatedKustomization {
  name: string;
  /** default "flux-system" */
  namespace?: string;
  /** the GitRepository (same namespace) to build from */
  source: string;
  /** `spec.path`, e.g. "./flux/dev" */
  path: string;
  /** `spec.interval` as a Go duration; default "1h" */
  interval?: string;
  /** `spec.retryInterval`; default: the interval */
  retryInterval?: string;
  /** `spec.timeout` as a Go duration; default: the interval. The controller never waits less than 30s. */
  timeout?: string;
  /** `spec.wait`: health-check everything applied */
  wait?: boolean;
  /** `spec.prune`, default true */
  prune?: boolean;
}

export interface SimulatedHelmRelease {
  name: string;
  /** default "flux-system" */
  namespace?: string;
  /** the GitRepository (same namespace) holding the chart */
  source: string;
  /** `spec.chart.spec.chart`: the chart directory in the repository, e.g. "./charts/carts" */
  chart: string;
  /** `spec.chart.spec.valuesFiles`, paths in the repository */
  valuesFiles?: string[];
  /** `spec.chart.spec.reconcileStrategy`; default "ChartVersion" (the CRD default) */
  reconcileStrategy?: "ChartVersion" | "Revision";
  /** `spec.values` */
  values?: Record<string, unknown>;
  /** `spec.targetNamespace`: the release is then `<targetNamespace>-<name>` in that namespace */
  targetNamespace?: string;
  /** `spec.interval`, default "1h" */
  interval?: string;
  /** `spec.timeout`, default: helm-controller's 5m0s */
  timeout?: string;
  /**
   * `spec.install`: `disableWait` skips Helm's wait for the objects (then `crashloop`/`hang` install fine);
   * `createNamespace` is reported only (the simulator does not check namespaces).
   */
  install?: { createNamespace?: boolean; disableWait?: boolean };
  /** `spec.upgrade`: `disableWait` as for install */
  upgrade?: { disableWait?: boolean };
}

export interface FluxSimulatorOptions {
  /** accepted bearer token */
  token: string;
  gitRepositories: SimulatedGitRepository[];
  kustomizations?: SimulatedKustomization[];
  helmReleases?: SimulatedHelmRelease[];
  /**
   * Wall-clock time a failing health check runs before Ready=False (default 300). The messages still say what the
   * real controller writes for its timeout (at least 30s).
   */
  healthCheckTimeoutMs?: number;
  /** wall-clock time a passing health check takes (default 20) */
  healthCheckPassMs?: number;
  /** pause between two status writes of one reconcile, so polling clients can see them too (default 5) */
  stepDelayMs?: number;
  /** base of `status.artifact.url`; default the in-cluster address of source-controller */
  storageUrl?: string;
  /** default 127.0.0.1 */
  host?: string;
  /** default 0 = a free port */
  port?: number;
  /** notification-controller Receivers (notification.toolkit.fluxcd.io/v1), served on the same port under `/hook/` */
  receivers?: SimulatedReceiver[];
}

/** A Receiver of type generic or generic-hmac in flux-system; its path is receiverWebhookPath(token, name). */
export interface SimulatedReceiver {
  name: string;
  type: "generic" | "generic-hmac";
  /** the `token` of its Secret: part of the path's digest, and the HMAC key of generic-hmac */
  token: string;
  /** the objects it annotates with `reconcile.fluxcd.io/requestedAt` */
  resources: Array<{ kind: "GitRepository" | "Kustomization" | "HelmRelease"; name: string }>;
}

/** `status.webhookPath` of a Receiver: `/hook/` + hex(sha256(token + name + namespace)) (api/v1 GetWebhookPath). */
export function receiverWebhookPath(token: string, name: string, namespace = "flux-system"): string {
  return `/hook/${createHash("sha256")
    .update(token + name + namespace)
    .digest("hex")}`;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  contentType?: string;
  body?: unknown;
}

/** metav1.Condition */
export interface FluxCondition {
  lastTransitionTime: string;
  message: string;
  observedGeneration: number;
  reason: string;
  status: "True" | "False" | "Unknown";
  type: string;
}

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    annotations?: Record<string, string>;
    creationTimestamp: string;
    finalizers?: string[];
    generation: number;
    labels?: Record<string, string>;
    name: string;
    namespace: string;
    resourceVersion: string;
    uid: string;
  };
  spec: Record<string, unknown>;
  status: KubeStatus;
}

interface KubeStatus {
  conditions?: FluxCondition[];
  observedGeneration?: number;
  lastHandledReconcileAt?: string;
  [key: string]: unknown;
}

interface Artifact {
  digest: string;
  lastUpdateTime: string;
  path: string;
  revision: string;
  size: number;
  url: string;
}

interface HistoryEntry {
  digest: string;
  firstReconciled: string;
  lastReconciled: string;
  lastReconciledDuration: string;
  lastReconciledStatus: string;
  metadata: { revision: string };
  totalReconciliations: number;
}

/** One served resource type: its path segments and the names the API server uses in messages. */
interface ResourceType {
  group: string;
  version: string;
  plural: string;
  kind: string;
}

const RESOURCE_TYPES = {
  GitRepository: {
    group: "source.toolkit.fluxcd.io",
    version: "v1",
    plural: "gitrepositories",
    kind: "GitRepository",
  },
  Kustomization: {
    group: "kustomize.toolkit.fluxcd.io",
    version: "v1",
    plural: "kustomizations",
    kind: "Kustomization",
  },
  HelmRelease: {
    group: "helm.toolkit.fluxcd.io",
    version: "v2",
    plural: "helmreleases",
    kind: "HelmRelease",
  },
} as const satisfies Record<string, ResourceType>;
type FluxKind = keyof typeof RESOURCE_TYPES;

const RESOURCES: ResourceType[] = Object.values(RESOURCE_TYPES);

const REQUESTED_AT = "reconcile.fluxcd.io/requestedAt";
const FINALIZER = "finalizers.fluxcd.io";
const DEFAULT_NAMESPACE = "flux-system";
const HISTORY_LIMIT = 5;
/** Kustomization.GetTimeout: the controller never waits less than this. */
const MIN_TIMEOUT_MS = 30_000;
/** kustomize-controller's --requeue-dependency default, quoted in the ArtifactFailed message */
const DEPENDENCY_REQUEUE = "30s";
const ACCEPTED_PATCH_TYPES =
  "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";
/** what the lab's git server answers with a 401 (the tail of the real GitOperationFailed message) */
const GIT_AUTH_BODY = "authentication required\n";
/** cluster-scoped kinds: their inventory ids have no namespace */
const CLUSTER_SCOPED = new Set([
  "Namespace",
  "ClusterRole",
  "ClusterRoleBinding",
  "CustomResourceDefinition",
  "PersistentVolume",
  "StorageClass",
]);

/** An answer with a Kubernetes `Status` body. */
class StatusError extends Error {
  override readonly name = "StatusError";
  constructor(
    readonly code: number,
    readonly reason: string | undefined,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }

  body(): Record<string, unknown> {
    return {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      ...(this.reason === undefined ? {} : { reason: this.reason }),
      ...(this.details === undefined ? {} : { details: this.details }),
      code: this.code,
    };
  }
}

const notFound = (type: ResourceType, name: string) =>
  new StatusError(404, "NotFound", `${type.plural}.${type.group} "${name}" not found`, {
    name,
    group: type.group,
    kind: type.plural,
  });

/** What the committed manifests under a Kustomization's path make the simulated cluster do. */
type RolloutOutcome = "sync-fail" | "crashloop" | "hang" | "healthy";

interface ParsedObject {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  images: string[];
  text: string;
}

type BuildResult =
  | { ok: true; objects: ParsedObject[]; digest: string; outcome: RolloutOutcome }
  | { ok: false; message: string };

interface Record_ {
  type: ResourceType;
  object: KubeObject;
  /** serialises reconciles of one object */
  queue: Promise<void>;
  /** a reconcile is queued and has not started yet: further requests join it */
  pending: boolean;
  timer?: NodeJS.Timeout;
}

interface GitRepositoryRecord extends Record_ {
  kind: "GitRepository";
  gitDir: string;
  authRefused: boolean;
}

interface KustomizationRecord extends Record_ {
  kind: "Kustomization";
}

interface HelmReleaseRecord extends Record_ {
  kind: "HelmRelease";
  /**
   * The HelmChart helm-controller keeps for it (not served): its spec, and its generation, which grows when the
   * HelmRelease's `spec.chart.spec` changes. With `valuesFiles` the generation is part of the chart version.
   */
  helmChart?: { spec: string; generation: number };
}

type FluxRecord = GitRepositoryRecord | KustomizationRecord | HelmReleaseRecord;

/** status.history[] of a HelmRelease: helm-controller's release snapshots, newest first */
interface ReleaseSnapshot {
  appVersion?: string;
  chartName: string;
  chartVersion: string;
  configDigest: string;
  digest: string;
  firstDeployed: string;
  lastDeployed: string;
  name: string;
  namespace: string;
  status: "deployed" | "superseded" | "failed";
  version: number;
}

/** One version of an object as the simulator wrote it; `written` events carry it with the time. */
export interface WrittenVersion {
  resourceVersion: number;
  type: "ADDED" | "MODIFIED";
  resource: ResourceType;
  namespace: string;
  name: string;
  json: string;
}

interface Watcher {
  res: ServerResponse;
  resource: ResourceType;
  namespace?: string;
  name?: string;
}

export class FluxSimulator extends EventEmitter<{ written: [WrittenVersion & { at: number }] }> {
  /** every HTTP request received, in order */
  readonly requests: RecordedRequest[] = [];
  /** internal failures that were not an API answer; tests assert it stays empty */
  readonly errors: Error[] = [];

  private readonly token: string;
  private readonly receivers: SimulatedReceiver[];
  private readonly healthCheckTimeoutMs: number;
  private readonly healthCheckPassMs: number;
  private readonly stepDelayMs: number;
  private readonly storageUrl: string;
  private readonly host: string;
  private readonly port: number;
  private readonly records = new Map<string, FluxRecord>();
  /** every version written, in order: what a watch from an older resourceVersion replays */
  private readonly versions: WrittenVersion[] = [];
  private readonly watchers = new Set<Watcher>();
  private server?: Server;
  private baseUrl?: string;
  private state: "new" | "running" | "stopped" = "new";
  private resourceVersion = 200;
  private pendingFailures: number[] = [];

  constructor(options: FluxSimulatorOptions) {
    super();
    if (options.token === "") throw new Error("FluxSimulator: options.token must not be empty");
    this.token = options.token;
    this.receivers = options.receivers ?? [];
    this.healthCheckTimeoutMs = nonNegative(options.healthCheckTimeoutMs, 300, "healthCheckTimeoutMs");
    this.healthCheckPassMs = nonNegative(options.healthCheckPassMs, 20, "healthCheckPassMs");
    this.stepDelayMs = nonNegative(options.stepDelayMs, 5, "stepDelayMs");
    this.storageUrl = options.storageUrl ?? "http://source-controller.flux-system.svc.cluster.local.";
    this.host = options.host ?? "127.0.0.1";
    this.port = options.port ?? 0;
    for (const repo of options.gitRepositories) this.addGitRepository(repo);
    for (const ks of options.kustomizations ?? []) this.addKustomization(ks);
    for (const hr of options.helmReleases ?? []) this.addHelmRelease(hr);
  }

  get url(): string {
    if (this.baseUrl === undefined) throw new Error("FluxSimulator: call start() before reading url");
    return this.baseUrl;
  }

  /**
   * A kubeconfig (JSON, which is YAML) for `@kubernetes/client-node` or kubectl: server, token, context. It sets
   * `insecure-skip-tls-verify`: client-node 1.x refuses an `http://` server without it ("HTTP protocol is not allowed
   * when skipTLSVerify is not set or false").
   */
  kubeconfig(): string {
    return JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "flux-simulator", cluster: { server: this.url, "insecure-skip-tls-verify": true } }],
      users: [{ name: "flux-simulator", user: { token: this.token } }],
      contexts: [
        {
          name: "flux-simulator",
          context: { cluster: "flux-simulator", user: "flux-simulator", namespace: DEFAULT_NAMESPACE },
        },
      ],
      "current-context": "flux-simulator",
    });
  }

  /** Listens, then reconciles every object once (as the controllers do for new objects) and waits for that. */
  async start(): Promise<string> {
    if (this.state !== "new") throw new Error(`FluxSimulator: start() called on a ${this.state} simulator`);
    this.state = "running";
    const server = createServer((req, res) => void this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, this.host, () => resolve());
    });
    const address = server.address() as AddressInfo;
    this.baseUrl = `http://${address.address.includes(":") ? `[${address.address}]` : address.address}:${address.port}`;
    // GitRepositories first; a Kustomization that finds no artifact yet says so and is queued again by it.
    for (const record of this.records.values()) void this.enqueue(record);
    await this.idle();
    return this.baseUrl;
  }

  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    const wasRunning = this.state === "running";
    this.state = "stopped";
    for (const record of this.records.values()) clearTimeout(record.timer);
    for (const watcher of this.watchers) watcher.res.end();
    this.watchers.clear();
    const server = this.server;
    if (wasRunning && server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    await this.idle();
  }

  /** Resolves when no reconcile is queued or running. */
  async idle(): Promise<void> {
    for (;;) {
      const queues = [...this.records.values()].map((record) => record.queue);
      await Promise.all(queues);
      if ([...this.records.values()].every((record, i) => record.queue === queues[i] && !record.pending))
        return;
    }
  }

  /** The git server refuses (or accepts again) the credentials of a GitRepository from its next reconcile on. */
  refuseGitAuth(name: string, refused = true, namespace = DEFAULT_NAMESPACE): void {
    const record = this.records.get(key(RESOURCE_TYPES.GitRepository, namespace, name));
    if (record?.kind !== "GitRepository")
      throw new Error(`FluxSimulator: no GitRepository ${namespace}/${name}`);
    record.authRefused = refused;
  }

  /** The next `count` API requests answer `code` (default 503) with a Status body, unprocessed. */
  injectFailures(count: number, code = 503): void {
    for (let i = 0; i < count; i++) this.pendingFailures.push(code);
  }

  /** The object as a GET answers it, for tests that read it without HTTP. */
  get(kind: FluxKind, name: string, namespace = DEFAULT_NAMESPACE): Record<string, unknown> {
    const record = this.records.get(key(RESOURCE_TYPES[kind], namespace, name));
    if (!record) throw new Error(`FluxSimulator: no ${kind} ${namespace}/${name}`);
    return JSON.parse(serialize(record.object)) as Record<string, unknown>;
  }

  // ------------------------------------------------------------------------------------------------
  // The objects and the API server's bookkeeping: resourceVersion, generation, watch history
  // ------------------------------------------------------------------------------------------------

  private addGitRepository(repo: SimulatedGitRepository): void {
    const type = RESOURCE_TYPES.GitRepository;
    const spec: Record<string, unknown> = {
      interval: repo.interval ?? "1h",
      ref: { branch: repo.branch ?? "main" },
      ...(repo.secretRef === undefined ? {} : { secretRef: { name: repo.secretRef } }),
      timeout: "60s", // CRD default
      url: repo.url ?? `file://${repo.gitDir}`,
    };
    const record: GitRepositoryRecord = {
      ...this.newRecord(type, repo.name, repo.namespace, spec),
      kind: "GitRepository",
      gitDir: repo.gitDir,
      authRefused: repo.authRefused ?? false,
    };
    this.register(record);
  }

  private addKustomization(ks: SimulatedKustomization): void {
    const type = RESOURCE_TYPES.Kustomization;
    const namespace = ks.namespace ?? DEFAULT_NAMESPACE;
    if (!this.records.has(key(RESOURCE_TYPES.GitRepository, namespace, ks.source))) {
      throw new Error(
        `FluxSimulator: Kustomization ${ks.name} names GitRepository ${ks.source}, which is not given`,
      );
    }
    const spec: Record<string, unknown> = {
      force: false, // CRD default
      interval: ks.interval ?? "1h",
      path: ks.path,
      prune: ks.prune ?? true,
      ...(ks.retryInterval === undefined ? {} : { retryInterval: ks.retryInterval }),
      sourceRef: { kind: "GitRepository", name: ks.source },
      ...(ks.timeout === undefined ? {} : { timeout: ks.timeout }),
      ...(ks.wait === undefined ? {} : { wait: ks.wait }),
    };
    this.register({ ...this.newRecord(type, ks.name, namespace, spec), kind: "Kustomization" });
  }

  private addHelmRelease(hr: SimulatedHelmRelease): void {
    const type = RESOURCE_TYPES.HelmRelease;
    const namespace = hr.namespace ?? DEFAULT_NAMESPACE;
    if (!this.records.has(key(RESOURCE_TYPES.GitRepository, namespace, hr.source))) {
      throw new Error(
        `FluxSimulator: HelmRelease ${hr.name} names GitRepository ${hr.source}, which is not given`,
      );
    }
    const spec: Record<string, unknown> = {
      chart: {
        spec: {
          chart: hr.chart,
          interval: hr.interval ?? "1h",
          reconcileStrategy: hr.reconcileStrategy ?? "ChartVersion",
          sourceRef: { kind: "GitRepository", name: hr.source },
          ...(hr.valuesFiles === undefined ? {} : { valuesFiles: hr.valuesFiles }),
          version: "*", // CRD default
        },
      },
      interval: hr.interval ?? "1h",
      ...(hr.targetNamespace === undefined ? {} : { targetNamespace: hr.targetNamespace }),
      ...(hr.timeout === undefined ? {} : { timeout: hr.timeout }),
      ...(hr.values === undefined ? {} : { values: hr.values }),
      ...(hr.install === undefined ? {} : { install: hr.install }),
      ...(hr.upgrade === undefined ? {} : { upgrade: hr.upgrade }),
    };
    this.register({ ...this.newRecord(type, hr.name, namespace, spec), kind: "HelmRelease" });
  }

  private newRecord(
    type: ResourceType,
    name: string,
    namespace: string | undefined,
    spec: Record<string, unknown>,
  ) {
    if (name === "") throw new Error("FluxSimulator: object names must not be empty");
    for (const duration of ["interval", "timeout", "retryInterval"]) {
      const value = spec[duration];
      if (typeof value === "string" && goDurationMs(value) === undefined) {
        throw new Error(
          `FluxSimulator: ${type.kind} ${name}: spec.${duration} "${value}" is not a Go duration`,
        );
      }
    }
    const object: KubeObject = {
      apiVersion: `${type.group}/${type.version}`,
      kind: type.kind,
      metadata: {
        creationTimestamp: rfc3339(),
        generation: 1,
        name,
        namespace: namespace ?? DEFAULT_NAMESPACE,
        resourceVersion: "",
        uid: randomUUID(),
      },
      spec,
      status: { observedGeneration: -1 }, // CRD default
    };
    return { type, object, queue: Promise.resolve(), pending: false };
  }

  private register(record: FluxRecord): void {
    const id = key(record.type, record.object.metadata.namespace, record.object.metadata.name);
    if (this.records.has(id)) throw new Error(`FluxSimulator: ${id} given twice`);
    this.records.set(id, record);
    this.commit(record, record.object, "ADDED");
  }

  /**
   * Writes a new version if it differs from the stored one: a new resourceVersion, generation + 1 when the spec
   * changed (as the API server keeps them for a CRD), and one watch event. No change, no write.
   */
  private write(record: FluxRecord, mutate: (object: KubeObject) => void): boolean {
    const next = structuredClone(record.object);
    mutate(next);
    const before = record.object;
    next.metadata.resourceVersion = before.metadata.resourceVersion;
    if (serialize(next) === serialize(before)) return false;
    if (JSON.stringify(sortKeys(next.spec)) !== JSON.stringify(sortKeys(before.spec))) {
      next.metadata.generation = before.metadata.generation + 1;
    }
    this.commit(record, next, "MODIFIED");
    return true;
  }

  private commit(record: FluxRecord, object: KubeObject, type: WrittenVersion["type"]): void {
    this.resourceVersion += 1;
    object.metadata.resourceVersion = String(this.resourceVersion);
    record.object = object;
    const version: WrittenVersion = {
      resourceVersion: this.resourceVersion,
      type,
      resource: record.type,
      namespace: object.metadata.namespace,
      name: object.metadata.name,
      json: serialize(object),
    };
    this.versions.push(version);
    this.emit("written", { ...version, at: performance.now() });
    for (const watcher of this.watchers) {
      if (watcherMatches(watcher, version)) watcher.res.write(watchLine(version));
    }
  }

  // ------------------------------------------------------------------------------------------------
  // Controllers
  // ------------------------------------------------------------------------------------------------

  /** The controller work queue: one reconcile at a time per object; requests while one waits join it. */
  private enqueue(record: FluxRecord): Promise<void> {
    if (this.state !== "running") return Promise.resolve();
    if (record.pending) return record.queue;
    record.pending = true;
    clearTimeout(record.timer);
    record.queue = record.queue.then(async () => {
      record.pending = false;
      if (this.state !== "running") return;
      try {
        if (record.kind === "GitRepository") await this.reconcileGitRepository(record);
        else if (record.kind === "Kustomization") await this.reconcileKustomization(record);
        else await this.reconcileHelmRelease(record);
      } catch (error) {
        this.errors.push(error instanceof Error ? error : new Error(String(error)));
      }
    });
    return record.queue;
  }

  private schedule(record: FluxRecord, after: string): void {
    if (this.state !== "running") return;
    clearTimeout(record.timer);
    const ms = goDurationMs(after) ?? 3_600_000;
    record.timer = setTimeout(() => void this.enqueue(record), ms);
    record.timer.unref();
  }

  private async step(): Promise<void> {
    if (this.stepDelayMs > 0) await delay(this.stepDelayMs);
  }

  /** The finalizer is the controller's first write to a new object. */
  private addFinalizer(record: FluxRecord): void {
    this.write(record, (o) => {
      if (!o.metadata.finalizers?.includes(FINALIZER))
        o.metadata.finalizers = [...(o.metadata.finalizers ?? []), FINALIZER];
    });
  }

  /** source-controller GitRepositoryReconciler, in the order of the lab's watch (docs/testing.md). */
  private async reconcileGitRepository(record: GitRepositoryRecord): Promise<void> {
    this.addFinalizer(record);
    await this.step();
    const { metadata, spec } = record.object;
    const generation = metadata.generation;
    const requestedAt = metadata.annotations?.[REQUESTED_AT];
    const observed = record.object.status.observedGeneration ?? -1;
    const url = String(spec["url"]);
    const branch = String((spec["ref"] as { branch?: string } | undefined)?.branch ?? "main");
    const artifact = record.object.status["artifact"] as Artifact | undefined;

    if (observed !== generation) {
      const message = `processing object: new generation ${observed} -> ${generation}`;
      this.write(record, (o) => {
        setCondition(o, "Reconciling", "True", "Progressing", message);
        setCondition(o, "Ready", "Unknown", "Progressing", message);
      });
      await this.step();
    } else {
      this.write(record, (o) =>
        setCondition(o, "Reconciling", "True", "Progressing", "reconciliation in progress"),
      );
      await this.step();
    }
    if (artifact === undefined) {
      this.write(record, (o) => {
        setCondition(o, "Reconciling", "True", "Progressing", "building artifact");
        setCondition(o, "Ready", "Unknown", "Progressing", "building artifact");
      });
      await this.step();
    }

    const fetched = await this.fetch(record, url, branch);
    if (!fetched.ok) {
      this.write(record, (o) => {
        setCondition(o, "Reconciling", "True", "ProgressingWithRetry", "building artifact");
        setCondition(o, "Ready", "False", "GitOperationFailed", fetched.message);
        setCondition(o, "FetchFailed", "True", "GitOperationFailed", fetched.message);
        if (requestedAt !== undefined) o.status.lastHandledReconcileAt = requestedAt;
      });
      this.schedule(record, String(spec["interval"]));
      return;
    }

    const revision = `${branch}@sha1:${fetched.sha}`;
    if (artifact?.revision !== revision) {
      const building = `building artifact: new upstream revision '${revision}'`;
      this.write(record, (o) => {
        setCondition(o, "Reconciling", "True", "Progressing", building);
        setCondition(o, "Ready", "Unknown", "Progressing", building);
        if (artifact !== undefined) {
          setCondition(o, "ArtifactOutdated", "True", "NewRevision", `new upstream revision '${revision}'`);
        }
      });
      await this.step();
    }
    const stored = `stored artifact for revision '${revision}'`;
    // Conditions are patched before the other status fields: for one version Ready names the new revision while
    // status.artifact is still the old one.
    this.write(record, (o) => {
      removeCondition(o, "Reconciling");
      removeCondition(o, "ArtifactOutdated");
      removeCondition(o, "FetchFailed");
      setCondition(o, "Ready", "True", "Succeeded", stored);
      setCondition(o, "ArtifactInStorage", "True", "Succeeded", stored);
    });
    await this.step();
    const nextArtifact =
      artifact?.revision === revision ? artifact : await this.buildArtifact(record, fetched.sha, revision);
    this.write(record, (o) => {
      o.status["artifact"] = nextArtifact;
      o.status.observedGeneration = generation;
      if (requestedAt !== undefined) o.status.lastHandledReconcileAt = requestedAt;
    });
    if (artifact?.revision !== revision) {
      // kustomize-controller watches its sources: a new artifact revision queues every dependent Kustomization.
      for (const dependent of this.dependents(record)) void this.enqueue(dependent);
    }
    this.schedule(record, String(spec["interval"]));
  }

  /** `git ls-remote` of the branch, with the messages source-controller writes when the clone fails. */
  private async fetch(
    record: GitRepositoryRecord,
    url: string,
    branch: string,
  ): Promise<{ ok: true; sha: string } | { ok: false; message: string }> {
    const failed = (cause: string) => ({
      ok: false as const,
      message: `failed to checkout and determine revision: unable to clone '${url}': ${cause}`,
    });
    if (record.authRefused) return failed(`authentication required: ${GIT_AUTH_BODY}`);
    const exists = await git(["--git-dir", record.gitDir, "rev-parse", "--git-dir"]).then(
      () => true,
      () => false,
    );
    if (!exists) return failed("repository not found: ");
    try {
      const sha = (
        await git([
          "--git-dir",
          record.gitDir,
          "rev-parse",
          "--verify",
          "--quiet",
          `refs/heads/${branch}^{commit}`,
        ])
      ).trim();
      return { ok: true, sha };
    } catch (error) {
      if (error instanceof GitCommandError && error.exitCode === 1) {
        return failed(`couldn't find remote ref "refs/heads/${branch}"`);
      }
      throw error;
    }
  }

  /** digest and size of a real tarball of the commit (`git archive`), path and url as source-controller names them. */
  private async buildArtifact(record: GitRepositoryRecord, sha: string, revision: string): Promise<Artifact> {
    const tarball = await gitBuffer(record.gitDir, ["archive", "--format=tar.gz", sha]);
    const { name, namespace } = record.object.metadata;
    const path = `gitrepository/${namespace}/${name}/${sha}.tar.gz`;
    return {
      digest: `sha256:${createHash("sha256").update(tarball).digest("hex")}`,
      lastUpdateTime: rfc3339(),
      path,
      revision,
      size: tarball.length,
      url: `${this.storageUrl}/${path}`,
    };
  }

  /** The Kustomizations and HelmReleases built from this GitRepository. */
  private dependents(repo: GitRepositoryRecord): Array<KustomizationRecord | HelmReleaseRecord> {
    return [...this.records.values()].filter(
      (record): record is KustomizationRecord | HelmReleaseRecord =>
        record.kind !== "GitRepository" &&
        record.object.metadata.namespace === repo.object.metadata.namespace &&
        sourceName(record) === repo.object.metadata.name,
    );
  }

  /** kustomize-controller KustomizationReconciler, in the order of the lab's watch (docs/testing.md). */
  private async reconcileKustomization(record: KustomizationRecord): Promise<void> {
    const started = performance.now();
    this.addFinalizer(record);
    await this.step();
    const { metadata, spec } = record.object;
    const generation = metadata.generation;
    const requestedAt = metadata.annotations?.[REQUESTED_AT];
    const retryInterval = String(spec["retryInterval"] ?? spec["interval"]);
    const source = this.records.get(
      key(RESOURCE_TYPES.GitRepository, metadata.namespace, sourceName(record)),
    ) as GitRepositoryRecord;
    const artifact = source.object.status["artifact"] as Artifact | undefined;
    const handled = (o: KubeObject) => {
      if (requestedAt !== undefined) o.status.lastHandledReconcileAt = requestedAt;
    };

    if (artifact === undefined) {
      // No timer: the source's first artifact queues this Kustomization.
      this.write(record, (o) => {
        setCondition(
          o,
          "Ready",
          "False",
          "ArtifactFailed",
          `Source artifact not found, retrying in ${DEPENDENCY_REQUEUE}`,
        );
        handled(o);
      });
      return;
    }
    const revision = artifact.revision;
    const sha = revision.slice(revision.lastIndexOf(":") + 1);
    const timeout = effectiveTimeout(spec);
    const forRevision = `for revision ${revision} with a timeout of ${formatGoDuration(timeout)}`;
    const progress = (message: string) => (o: KubeObject) => {
      setCondition(o, "Reconciling", "True", "Progressing", message);
      setCondition(o, "Ready", "Unknown", "Progressing", "Reconciliation in progress");
    };
    const fail = (stage: string, reason: string, message: string) => (o: KubeObject) => {
      setCondition(o, "Reconciling", "True", "ProgressingWithRetry", stage);
      setCondition(o, "Ready", "False", reason, message);
      handled(o);
    };

    const fetching = `Fetching manifests ${forRevision}`;
    this.write(record, progress(fetching));
    await this.step();
    const path = normalizePath(String(spec["path"]));
    const tree = await treeAt(source.gitDir, sha, path);
    if (tree === undefined) {
      const tmp = `/tmp/kustomization-${Math.floor(1e9 + Math.random() * 3e9)}`;
      const missing = `kustomization path not found: stat ${tmp}/${path}: no such file or directory`;
      this.write(record, fail(fetching, "ArtifactFailed", missing));
      this.schedule(record, retryInterval);
      return;
    }

    const building = `Building manifests ${forRevision}`;
    this.write(record, progress(building));
    await this.step();
    this.write(record, (o) => {
      o.status["lastAttemptedRevision"] = revision;
    });
    await this.step();
    const build = await buildManifests(source.gitDir, tree, path);
    if (!build.ok) {
      this.write(record, fail(building, "BuildFailed", build.message));
      this.schedule(record, retryInterval);
      return;
    }

    const drift = `Detecting drift ${forRevision}`;
    this.write(record, progress(drift));
    await this.step();
    const inventory = inventoryOf(build.objects);
    const finish = (status: string, extra: (o: KubeObject) => void) =>
      this.write(record, (o) => {
        extra(o);
        o.status["history"] = upsertHistory(o.status["history"] as HistoryEntry[] | undefined, {
          digest: build.digest,
          revision,
          status,
          duration: formatGoDuration(performance.now() - started),
        });
        handled(o);
      });

    if (build.outcome === "sync-fail") {
      this.write(record, fail(drift, "ReconciliationFailed", admissionRefusal(build.objects)));
      await this.step();
      finish("ReconciliationFailed", () => undefined);
      this.schedule(record, retryInterval);
      return;
    }

    if (spec["wait"] === true) {
      const checking = `Running health checks ${forRevision}`;
      this.write(record, (o) => {
        setCondition(o, "Reconciling", "True", "Progressing", checking);
        setCondition(o, "Healthy", "Unknown", "Progressing", checking);
      });
      await this.step();
      // The inventory of what was applied is written once the health check runs (a version of its own in the lab).
      this.write(record, (o) => {
        o.status["inventory"] = inventory;
      });
      const checkStarted = performance.now();
      if (build.outcome === "crashloop" || build.outcome === "hang") {
        await delay(this.healthCheckTimeoutMs);
        if (this.state !== "running") return;
        const cause = `timeout waiting for: [${stuckDeployments(build.objects)
          .map((o) => `Deployment/${o.namespace}/${o.name} status: 'InProgress'`)
          .join(", ")}]`;
        // The real controller reports the time it waited: its whole timeout, a few milliseconds more.
        const waited = formatGoDuration(timeout + 1 + Math.random() * 40, true);
        this.write(record, (o) => {
          setCondition(o, "Reconciling", "True", "ProgressingWithRetry", checking);
          setCondition(
            o,
            "Ready",
            "False",
            "HealthCheckFailed",
            `health check failed after ${waited}: ${cause}`,
          );
          setCondition(o, "Healthy", "False", "HealthCheckFailed", cause);
          handled(o);
        });
        await this.step();
        finish("HealthCheckFailed", () => undefined);
        this.schedule(record, retryInterval);
        return;
      }
      await delay(this.healthCheckPassMs);
      if (this.state !== "running") return;
      const passed = `Health check passed in ${formatGoDuration(performance.now() - checkStarted, true)}`;
      this.write(record, (o) => setCondition(o, "Healthy", "True", "Succeeded", passed));
    }

    // Conditions are patched before the other status fields (fluxcd/pkg runtime/patch): for one version
    // Ready=True says "Applied revision: <new>" while lastAppliedRevision is still the old one.
    this.write(record, (o) => {
      removeCondition(o, "Reconciling");
      setCondition(o, "Ready", "True", "ReconciliationSucceeded", `Applied revision: ${revision}`);
    });
    await this.step();
    finish("ReconciliationSucceeded", (o) => {
      o.status["inventory"] = inventory;
      o.status["lastAppliedRevision"] = revision;
      o.status.observedGeneration = generation;
    });
    this.schedule(record, String(spec["interval"]));
  }

  /**
   * helm-controller (v1.4.3 in the lab) for a chart from a GitRepository, in the order of the lab's watch: prerequisites,
   * the install or upgrade action, Ready/Released, then the history; Reconciling goes last. No Helm runs: the chart's
   * files, the values files and `spec.values` carry the same markers as a Kustomization's manifests.
   */
  private async reconcileHelmRelease(record: HelmReleaseRecord): Promise<void> {
    const started = performance.now();
    this.addFinalizer(record);
    await this.step();
    const { metadata, spec } = record.object;
    const generation = metadata.generation;
    const requestedAt = metadata.annotations?.[REQUESTED_AT];
    const chartSpec = (spec["chart"] as { spec: Record<string, unknown> }).spec;
    const source = this.records.get(
      key(RESOURCE_TYPES.GitRepository, metadata.namespace, sourceName(record)),
    ) as GitRepositoryRecord;
    const artifact = source.object.status["artifact"] as Artifact | undefined;
    const helmChart = `${metadata.namespace}/${metadata.namespace}-${metadata.name}`;
    const targetNamespace = typeof spec["targetNamespace"] === "string" ? spec["targetNamespace"] : undefined;
    const releaseName = targetNamespace === undefined ? metadata.name : `${targetNamespace}-${metadata.name}`;
    const releaseNamespace = targetNamespace ?? metadata.namespace;
    const status = () => record.object.status;
    const history = () => (status()["history"] as ReleaseSnapshot[] | undefined) ?? [];
    const handled = (o: KubeObject) => {
      if (requestedAt !== undefined) o.status.lastHandledReconcileAt = requestedAt;
    };

    const firstRun = status()["helmChart"] === undefined;
    this.write(record, (o) => {
      removeCondition(o, "Stalled");
      setCondition(o, "Reconciling", "True", "Progressing", "Fulfilling prerequisites");
    });
    await this.step();
    if (firstRun) {
      // The HelmChart is created by this first reconcile; source-controller has not built it yet.
      this.write(record, (o) => {
        o.status["helmChart"] = helmChart;
      });
      await this.step();
      this.write(record, (o) =>
        setCondition(
          o,
          "Ready",
          "False",
          "SourceNotReady",
          `HelmChart '${helmChart}' is not ready: latest generation of object has not been reconciled`,
        ),
      );
      await this.step();
    }
    if (artifact === undefined) {
      // No artifact to build the chart from yet; the GitRepository's first artifact queues this release again.
      this.write(record, (o) => {
        setCondition(
          o,
          "Ready",
          "False",
          "SourceNotReady",
          `HelmChart '${helmChart}' is not ready: latest generation of object has not been reconciled`,
        );
        handled(o);
      });
      return;
    }
    const chart = await readChart(source.gitDir, artifact.revision, chartSpec);
    if (chart === undefined) {
      // Not recorded in the lab: the wording of a missing chart is the simulator's own.
      this.write(record, (o) => {
        setCondition(
          o,
          "Ready",
          "False",
          "SourceNotReady",
          `HelmChart '${helmChart}' is not ready: chart not found at '${String(chartSpec["chart"])}'`,
        );
        handled(o);
      });
      return;
    }
    const chartSpecText = JSON.stringify(sortKeys(chartSpec));
    if (record.helmChart?.spec !== chartSpecText) {
      record.helmChart = { spec: chartSpecText, generation: (record.helmChart?.generation ?? 0) + 1 };
    }
    // source-controller's build metadata: the commit's first 12 hex with `Revision`, then, with valuesFiles, the
    // HelmChart's generation (lab: 0.1.0+ad8065430ab9.1, and 0.1.0+1 with ChartVersion).
    const buildMetadata = [
      ...(chartSpec["reconcileStrategy"] === "Revision" ? [chart.sha.slice(0, 12)] : []),
      ...(Array.isArray(chartSpec["valuesFiles"]) && chartSpec["valuesFiles"].length > 0
        ? [String(record.helmChart.generation)]
        : []),
    ];
    const chartVersion =
      buildMetadata.length > 0 ? `${chart.version}+${buildMetadata.join(".")}` : chart.version;
    const configDigest = `sha256:${createHash("sha256")
      .update(JSON.stringify(sortKeys(spec["values"] ?? {})))
      .digest("hex")}`;
    const latest = history()[0];
    const inSync =
      latest !== undefined &&
      latest.chartVersion === chartVersion &&
      latest.configDigest === configDigest &&
      status()["lastAttemptedGeneration"] === generation;
    if (inSync && latest.status === "deployed") {
      // Nothing to do: the release is in sync with the chart and the values. The lab writes the end of the
      // reconcile and the handled request in two versions.
      this.write(record, (o) => removeCondition(o, "Reconciling"));
      await this.step();
      this.write(record, (o) => {
        o.status.observedGeneration = generation;
        handled(o);
      });
      this.schedule(record, String(spec["interval"]));
      return;
    }
    if (inSync && latest.status === "failed") {
      // Retries exhausted (install/upgrade remediation retries default to 0): stalled until something changes.
      this.write(record, (o) => {
        removeCondition(o, "Reconciling");
        const last = String(o.status["lastAttemptedReleaseAction"] ?? "install");
        setCondition(o, "Stalled", "True", "RetriesExceeded", `Failed to ${last} after 1 attempt(s)`);
      });
      await this.step();
      this.write(record, handled);
      return;
    }

    // Any earlier release, even a failed one, is upgraded (as the lab shows after a failed install).
    const action = history().length > 0 ? "upgrade" : "install";
    const deployedBefore = history().some((h) => h.status === "deployed" || h.status === "superseded");
    const running = `Running '${action}' action with timeout of ${formatGoDuration(goDurationMs(String(spec["timeout"] ?? "5m")) ?? 300_000)}`;
    this.write(record, (o) => {
      setCondition(o, "Reconciling", "True", "Progressing", running);
      setCondition(o, "Ready", "Unknown", "Progressing", running);
    });
    await this.step();
    this.write(record, (o) => {
      o.status["lastAttemptedConfigDigest"] = configDigest;
      o.status["lastAttemptedGeneration"] = generation;
      o.status["lastAttemptedRevision"] = chartVersion;
      o.status["storageNamespace"] = metadata.namespace;
      // A new release target: helm-controller clears the failure counts as it starts on it (lab).
      delete o.status["failures"];
      delete o.status["installFailures"];
      delete o.status["upgradeFailures"];
    });
    await this.step();
    // Helm waits for the objects unless `spec.<action>.disableWait`: only then do crashloop and hang matter.
    const waits = (spec[action] as { disableWait?: boolean } | undefined)?.disableWait !== true;
    const outcome = waits || chart.outcome === "sync-fail" ? chart.outcome : "healthy";
    if (outcome === "crashloop" || outcome === "hang") await delay(this.healthCheckTimeoutMs);
    if (this.state !== "running") return;

    const version = (history()[0]?.version ?? 0) + 1;
    const chartRef = `${chart.name}@${chartVersion}`;
    const Action = action === "install" ? "Install" : "Upgrade";
    const now = rfc3339();
    const snapshot = (snapshotStatus: ReleaseSnapshot["status"]): ReleaseSnapshot => ({
      ...(chart.appVersion === undefined ? {} : { appVersion: chart.appVersion }),
      chartName: chart.name,
      chartVersion,
      configDigest,
      digest: `sha256:${createHash("sha256").update(`${releaseName}.v${version}:${chart.digest}:${configDigest}`).digest("hex")}`,
      firstDeployed: history().at(-1)?.firstDeployed ?? now,
      lastDeployed: now,
      name: releaseName,
      namespace: releaseNamespace,
      status: snapshotStatus,
      version,
    });
    const actionDone = (o: KubeObject) => {
      o.status["lastAttemptedReleaseAction"] = action;
      o.status["lastAttemptedReleaseActionDuration"] = formatGoDuration(performance.now() - started, true);
    };

    if (outcome !== "healthy") {
      const cause =
        outcome === "sync-fail"
          ? helmRefusal(action, releaseName, deployedBefore && chart.hasDeployment)
          : "context deadline exceeded";
      const message = `Helm ${action} failed for release ${releaseNamespace}/${releaseName} with chart ${chartRef}: ${cause}`;
      this.write(record, (o) => {
        setCondition(o, "Ready", "False", `${Action}Failed`, message);
        setCondition(o, "Released", "False", `${Action}Failed`, message);
      });
      await this.step();
      this.write(record, (o) => {
        actionDone(o);
        o.status["failures"] = Number(o.status["failures"] ?? 0) + 1;
        o.status[`${action}Failures`] = Number(o.status[`${action}Failures`] ?? 0) + 1;
        o.status["history"] = [snapshot("failed"), ...history()].slice(0, HISTORY_LIMIT);
      });
      await this.step();
      this.write(record, (o) => {
        removeCondition(o, "Reconciling");
        setCondition(o, "Stalled", "True", "RetriesExceeded", `Failed to ${action} after 1 attempt(s)`);
      });
      await this.step();
      this.write(record, (o) => {
        o.status.observedGeneration = generation;
        handled(o);
      });
      return;
    }

    const succeeded = `Helm ${action} succeeded for release ${releaseNamespace}/${releaseName}.v${version} with chart ${chartRef}`;
    this.write(record, (o) => {
      setCondition(o, "Ready", "True", `${Action}Succeeded`, succeeded);
      setCondition(o, "Released", "True", `${Action}Succeeded`, succeeded);
    });
    await this.step();
    this.write(record, (o) => {
      actionDone(o);
      o.status["history"] = [
        snapshot("deployed"),
        ...history().map((h) => (h.status === "deployed" ? { ...h, status: "superseded" as const } : h)),
      ].slice(0, HISTORY_LIMIT);
    });
    await this.step();
    this.write(record, (o) => removeCondition(o, "Reconciling"));
    await this.step();
    // Snapshots.Truncate: after a release, keep the entries down to the previous successful one (lab: [v4 deployed,
    // v3 failed, v2 superseded, v1 superseded] becomes [v4, v3, v2]), in a version of its own.
    const kept = truncatedHistory(history());
    if (kept.length < history().length) {
      this.write(record, (o) => {
        o.status["history"] = kept;
      });
      await this.step();
    }
    this.write(record, (o) => {
      o.status.observedGeneration = generation;
      handled(o);
    });
    this.schedule(record, String(spec["interval"]));
  }

  // ------------------------------------------------------------------------------------------------
  // HTTP: the kube-apiserver subset
  // ------------------------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? "/", "http://simulator.invalid");
      const bodyText = await readBody(req);
      const contentType = req.headers["content-type"];
      this.requests.push({
        method: req.method ?? "GET",
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        ...(contentType === undefined ? {} : { contentType }),
        ...(bodyText === "" ? {} : { body: parseMaybe(bodyText) }),
      });
      const injected = this.pendingFailures.shift();
      if (injected !== undefined) {
        throw new StatusError(
          injected,
          injected === 503 ? "ServiceUnavailable" : "InternalError",
          "injected failure",
        );
      }
      if (url.pathname.startsWith("/hook/")) return this.receive(url.pathname, req, bodyText, res);
      const route = matchRoute(url.pathname);
      if (!route) {
        res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("404 page not found\n");
        return;
      }
      const watch = ["1", "true"].includes(url.searchParams.get("watch") ?? "");
      const verb =
        req.method === "GET"
          ? watch
            ? "watch"
            : route.name
              ? "get"
              : "list"
          : (req.method ?? "").toLowerCase();
      this.authenticate(req, route, verb);
      if (req.method === "GET" && watch) return this.serveWatch(res, route, url.searchParams);
      if (req.method === "GET" && route.name) return sendJson(res, 200, this.find(route).object);
      if (req.method === "GET") return sendJson(res, 200, this.list(route));
      if (req.method === "PATCH" && route.name) {
        return sendJson(res, 200, await this.patch(route, contentType, bodyText));
      }
      throw new StatusError(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        {},
      );
    } catch (error) {
      const status =
        error instanceof StatusError ? error : new StatusError(500, "InternalError", describeError(error));
      if (!(error instanceof StatusError))
        this.errors.push(error instanceof Error ? error : new Error(String(error)));
      if (res.headersSent) res.end();
      else sendJson(res, status.code, status.body());
    }
  }

  /**
   * notification-controller's receiver server: an unknown path is 404; a generic-hmac Receiver checks
   * `X-Signature: <sha1|sha256|sha512>=<hex HMAC of the body>` (400 when it does not match); then every resource is
   * annotated with requestedAt, the current time as Go prints it (time.Now().String()), and the answer is 200.
   */
  private async receive(
    path: string,
    req: IncomingMessage,
    bodyText: string,
    res: ServerResponse,
  ): Promise<void> {
    const receiver = this.receivers.find((r) => receiverWebhookPath(r.token, r.name) === path);
    if (!receiver || req.method !== "POST") {
      res.writeHead(404).end();
      return;
    }
    if (receiver.type === "generic-hmac") {
      const [algorithm, signature] = String(req.headers["x-signature"] ?? "").split("=", 2);
      const valid =
        ["sha1", "sha256", "sha512"].includes(algorithm ?? "") &&
        signature === createHmac(algorithm!, receiver.token).update(bodyText).digest("hex");
      if (!valid) {
        res.writeHead(400).end();
        return;
      }
    }
    for (const resource of receiver.resources) {
      const type = RESOURCE_TYPES[resource.kind];
      const route: Route = { type, namespace: "flux-system", name: resource.name };
      const now = goTimeString(new Date());
      await this.patch(
        route,
        "application/merge-patch+json",
        JSON.stringify({ metadata: { annotations: { [REQUESTED_AT]: now } } }),
      );
    }
    res.writeHead(200).end();
  }

  /**
   * The token file authenticator: a wrong bearer token is 401 Unauthorized. No token at all makes the request
   * anonymous, and RBAC forbids it (403), as a real API server with anonymous auth on (the default) answers.
   */
  private authenticate(req: IncomingMessage, route: Route, verb: string): void {
    const header = req.headers.authorization;
    if (header === undefined) {
      const { type, namespace, name } = route;
      const subject = `${type.plural}.${type.group}${name ? ` "${name}"` : ""}`;
      throw new StatusError(
        403,
        "Forbidden",
        `${subject} is forbidden: User "system:anonymous" cannot ${verb} resource "${type.plural}" in API group "${type.group}" ` +
          (namespace === undefined ? "at the cluster scope" : `in the namespace "${namespace}"`),
        { ...(name ? { name } : {}), group: type.group, kind: type.plural },
      );
    }
    if (header !== `Bearer ${this.token}`) throw new StatusError(401, "Unauthorized", "Unauthorized");
  }

  private find(route: Route): FluxRecord {
    const record = this.records.get(key(route.type, route.namespace ?? "", route.name ?? ""));
    if (!record) throw notFound(route.type, route.name ?? "");
    return record;
  }

  private list(route: Route): Record<string, unknown> {
    return {
      apiVersion: `${route.type.group}/${route.type.version}`,
      items: [...this.records.values()]
        .filter(
          (r) =>
            r.type === route.type &&
            (route.namespace === undefined || r.object.metadata.namespace === route.namespace),
        )
        .map((r) => r.object),
      kind: `${route.type.kind}List`,
      metadata: { continue: "", resourceVersion: String(this.resourceVersion) },
    };
  }

  /** merge-patch (RFC 7386) or json-patch (RFC 6902) of metadata and spec; status is a subresource and is left alone. */
  private async patch(route: Route, contentType: string | undefined, bodyText: string): Promise<KubeObject> {
    const mediaType = (contentType ?? "").split(";")[0]?.trim().toLowerCase();
    if (mediaType !== "application/merge-patch+json" && mediaType !== "application/json-patch+json") {
      throw new StatusError(
        415,
        "UnsupportedMediaType",
        `the body of the request was in an unknown format - accepted media types include: ${ACCEPTED_PATCH_TYPES}`,
      );
    }
    const record = this.find(route);
    let patch: unknown;
    try {
      patch = JSON.parse(bodyText);
    } catch (error) {
      throw new StatusError(400, "BadRequest", `error decoding patch: ${describeError(error)}`);
    }
    const current = JSON.parse(serialize(record.object)) as KubeObject;
    let patched: unknown;
    try {
      patched =
        mediaType === "application/merge-patch+json" ? mergePatch(current, patch) : jsonPatch(current, patch);
    } catch (error) {
      throw new StatusError(
        422,
        "Invalid",
        `the server rejected our request due to an error in our request: ${describeError(error)}`,
      );
    }
    if (!isPlainObject(patched))
      throw new StatusError(400, "BadRequest", "the patched object is not an object");
    const metadata = isPlainObject(patched["metadata"]) ? patched["metadata"] : {};
    const expected = metadata["resourceVersion"];
    if (typeof expected === "string" && expected !== record.object.metadata.resourceVersion) {
      throw new StatusError(
        409,
        "Conflict",
        `Operation cannot be fulfilled on ${route.type.plural}.${route.type.group} "${route.name}": the object has been modified; please apply your changes to the latest version and try again`,
        { name: route.name, group: route.type.group, kind: route.type.plural },
      );
    }
    const previousRequest = record.object.metadata.annotations?.[REQUESTED_AT];
    const previousGeneration = record.object.metadata.generation;
    this.write(record, (o) => {
      for (const field of ["annotations", "labels"] as const) {
        const value = metadata[field];
        if (isStringMap(value) && Object.keys(value).length > 0) o.metadata[field] = value;
        else delete o.metadata[field];
      }
      if (Array.isArray(metadata["finalizers"])) o.metadata.finalizers = metadata["finalizers"].map(String);
      if (isPlainObject(patched["spec"])) o.spec = patched["spec"];
    });
    const requestedAt = record.object.metadata.annotations?.[REQUESTED_AT];
    // The controllers' predicates: a new generation, or a new value of the requestedAt annotation.
    if (
      record.object.metadata.generation !== previousGeneration ||
      (requestedAt !== undefined && requestedAt !== previousRequest)
    ) {
      void this.enqueue(record);
    }
    return record.object;
  }

  private serveWatch(res: ServerResponse, route: Route, query: URLSearchParams): void {
    let name = route.name;
    let namespace = route.namespace;
    for (const selector of (query.get("fieldSelector") ?? "").split(",").filter(Boolean)) {
      const match = /^(metadata\.name|metadata\.namespace)(==?)(.*)$/.exec(selector);
      if (!match) {
        throw new StatusError(
          400,
          "BadRequest",
          `"${selector}" is not a known field selector: only "metadata.name", "metadata.namespace"`,
        );
      }
      if (match[1] === "metadata.name") name = match[3];
      else namespace = match[3];
    }
    const fromText = query.get("resourceVersion") ?? "";
    if (fromText !== "" && !/^\d+$/.test(fromText)) {
      throw new StatusError(
        500,
        undefined,
        `resourceVersion: Invalid value: "${fromText}": strconv.ParseUint: parsing "${fromText}": invalid syntax`,
      );
    }
    const watcher: Watcher = {
      res,
      resource: route.type,
      ...(namespace === undefined ? {} : { namespace }),
      ...(name === undefined ? {} : { name }),
    };
    res.writeHead(200, { "content-type": "application/json", "cache-control": "no-cache, private" });
    res.flushHeaders();
    const from = fromText === "" ? 0 : Number(fromText);
    if (from === 0) {
      // No resourceVersion (or "0"): the current state as ADDED events, then every change.
      for (const record of this.records.values()) {
        const version: WrittenVersion = {
          resourceVersion: Number(record.object.metadata.resourceVersion),
          type: "ADDED",
          resource: record.type,
          namespace: record.object.metadata.namespace,
          name: record.object.metadata.name,
          json: serialize(record.object),
        };
        if (watcherMatches(watcher, version)) res.write(watchLine(version));
      }
    } else {
      // From a resourceVersion: every version written after it, in order.
      for (const version of this.versions) {
        if (version.resourceVersion > from && watcherMatches(watcher, version)) res.write(watchLine(version));
      }
    }
    this.watchers.add(watcher);
    const timeoutSeconds = Number(query.get("timeoutSeconds") ?? "");
    const timer = timeoutSeconds > 0 ? setTimeout(() => res.end(), timeoutSeconds * 1000) : undefined;
    res.on("close", () => {
      clearTimeout(timer);
      this.watchers.delete(watcher);
    });
  }
}

// ---- routes ----

interface Route {
  type: ResourceType;
  namespace?: string;
  name?: string;
}

/** `/apis/<group>/<version>[/namespaces/<ns>]/<plural>[/<name>]` of a served kind; undefined for anything else. */
/** A time as Go's time.Time.String() prints it, the form notification-controller writes into requestedAt. */
function goTimeString(at: Date): string {
  const iso = at.toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}000000 +0000 UTC`;
}

function matchRoute(pathname: string): Route | undefined {
  const match = /^\/apis\/([^/]+)\/([^/]+)(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?\/?$/.exec(
    pathname,
  );
  if (!match) return undefined;
  const [, group, version, namespace, plural, name] = match;
  const type = RESOURCES.find((t) => t.group === group && t.version === version && t.plural === plural);
  if (!type || (namespace === undefined && name !== undefined)) return undefined;
  return {
    type,
    ...(namespace === undefined ? {} : { namespace: decodeURIComponent(namespace) }),
    ...(name === undefined ? {} : { name: decodeURIComponent(name) }),
  };
}

/** The GitRepository a Kustomization or HelmRelease is built from. */
function sourceName(record: KustomizationRecord | HelmReleaseRecord): string {
  const spec = record.object.spec;
  const ref =
    record.kind === "Kustomization"
      ? spec["sourceRef"]
      : (spec["chart"] as { spec: Record<string, unknown> }).spec["sourceRef"];
  return (ref as { name: string }).name;
}

function key(type: ResourceType, namespace: string, name: string): string {
  return `${type.plural}/${namespace}/${name}`;
}

function watcherMatches(watcher: Watcher, version: WrittenVersion): boolean {
  return (
    watcher.resource === version.resource &&
    (watcher.namespace === undefined || watcher.namespace === version.namespace) &&
    (watcher.name === undefined || watcher.name === version.name)
  );
}

function watchLine(version: WrittenVersion): string {
  return `{"type":"${version.type}","object":${version.json}}\n`;
}

// ---- conditions and history, as fluxcd/pkg writes them ----

/**
 * Sets a condition; lastTransitionTime changes only with the status (metav1 semantics). Reconciling and Stalled go
 * first and every other new condition after the existing ones, the order the lab's watches show.
 */
function setCondition(
  object: KubeObject,
  type: string,
  status: FluxCondition["status"],
  reason: string,
  message: string,
): void {
  const conditions = object.status.conditions ?? [];
  const existing = conditions.find((c) => c.type === type);
  const condition: FluxCondition = {
    lastTransitionTime: existing?.status === status ? existing.lastTransitionTime : rfc3339(),
    message,
    observedGeneration: object.metadata.generation,
    reason,
    status,
    type,
  };
  if (existing) conditions[conditions.indexOf(existing)] = condition;
  else if (type === "Reconciling" || type === "Stalled") conditions.unshift(condition);
  else conditions.push(condition);
  object.status.conditions = conditions;
}

function removeCondition(object: KubeObject, type: string): void {
  const conditions = (object.status.conditions ?? []).filter((c) => c.type !== type);
  if (conditions.length > 0) object.status.conditions = conditions;
  else delete object.status.conditions;
}

/** history.Upsert: the newest first; the same digest and status counts up; at most 5 entries. */
function upsertHistory(
  history: HistoryEntry[] | undefined,
  entry: { digest: string; revision: string; status: string; duration: string },
): HistoryEntry[] {
  const now = rfc3339();
  const entries = [...(history ?? [])];
  const index = entries.findIndex(
    (e) => e.digest === entry.digest && e.lastReconciledStatus === entry.status,
  );
  const previous = index >= 0 ? entries.splice(index, 1)[0] : undefined;
  entries.unshift({
    digest: entry.digest,
    firstReconciled: previous?.firstReconciled ?? now,
    lastReconciled: now,
    lastReconciledDuration: entry.duration,
    lastReconciledStatus: entry.status,
    metadata: { revision: entry.revision },
    totalReconciliations: (previous?.totalReconciliations ?? 0) + 1,
  });
  return entries.slice(0, HISTORY_LIMIT);
}

// ---- manifests (real git CLI, never mocked) ----

function gitBuffer(gitDir: string, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(
      "git",
      ["--git-dir", gitDir, ...args],
      { encoding: "buffer", maxBuffer: 256 * 1024 * 1024, env: { ...process.env, GIT_CONFIG_NOSYSTEM: "1" } },
      (error, stdout) =>
        error
          ? reject(new Error(`git ${args.join(" ")} failed for ${gitDir}`, { cause: error }))
          : resolve(stdout),
    );
  });
}

function normalizePath(path: string): string {
  return path
    .replace(/^(\.\/|\/)+/, "")
    .replace(/\/+$/, "")
    .replace(/^\.$/, "");
}

/** Tree SHA of `path` at `commit`; undefined when there is no directory there. */
async function treeAt(gitDir: string, commit: string, path: string): Promise<string | undefined> {
  const spec = path === "" ? `${commit}^{tree}` : `${commit}:${path}`;
  const sha = await git(["--git-dir", gitDir, "rev-parse", "--verify", "--quiet", spec]).then(
    (out) => out.trim(),
    () => undefined,
  );
  if (sha === undefined) return undefined;
  const type = (await git(["--git-dir", gitDir, "cat-file", "-t", sha])).trim();
  return type === "tree" ? sha : undefined;
}

/**
 * What kustomize-controller builds from a plain directory (it generates a kustomization.yaml over every YAML file):
 * each document must parse and name its object; the content decides the rollout outcome.
 */
async function buildManifests(gitDir: string, tree: string, path: string): Promise<BuildResult> {
  const listing = await git(["--git-dir", gitDir, "ls-tree", "-r", "-z", tree]);
  const files: Array<{ name: string; sha: string }> = [];
  for (const line of listing.split("\0")) {
    const match = /^\d+ blob ([0-9a-f]+)\t(.*)$/s.exec(line);
    if (match?.[1] && match[2] && /\.(ya?ml|json)$/.test(match[2]))
      files.push({ sha: match[1], name: match[2] });
  }
  files.sort((a, b) => a.name.localeCompare(b.name));
  const tmp = `/tmp/kustomization-${Math.floor(1e9 + Math.random() * 3e9)}`;
  const objects: ParsedObject[] = [];
  const hash = createHash("sha256");
  let all = "";
  for (const file of files) {
    if (/(^|\/)kustomization\.ya?ml$/.test(file.name)) continue;
    const text = await git(["--git-dir", gitDir, "cat-file", "blob", file.sha]);
    all += `${text}\n`;
    const location = `${tmp}/${path === "" ? "" : `${path}/`}${file.name}`;
    for (const document of parseAllDocuments(text)) {
      const error = document.errors[0];
      if (error) {
        const line = error.linePos?.[0].line ?? 1;
        const detail = error.message.split("\n")[0] ?? error.code;
        return {
          ok: false,
          message: `failed to decode Kubernetes YAML from ${location}: MalformedYAMLError: yaml: line ${line}: ${detail}`,
        };
      }
      const value = document.toJS() as unknown;
      if (value === null || value === undefined) continue;
      const object = isPlainObject(value) ? value : {};
      const meta = isPlainObject(object["metadata"]) ? object["metadata"] : {};
      const kind = typeof object["kind"] === "string" ? object["kind"] : "";
      const name = typeof meta["name"] === "string" ? meta["name"] : "";
      if (kind === "" || name === "") {
        return {
          ok: false,
          message: `kustomize build failed: ${location}: missing ${kind === "" ? "kind" : "metadata.name"} in object`,
        };
      }
      const docText = document.toString();
      hash.update(docText);
      objects.push({
        apiVersion: typeof object["apiVersion"] === "string" ? object["apiVersion"] : "v1",
        kind,
        name,
        namespace: CLUSTER_SCOPED.has(kind)
          ? ""
          : typeof meta["namespace"] === "string"
            ? meta["namespace"]
            : "default",
        images: [...docText.matchAll(/^\s*(?:-\s*)?image:\s*["']?([^\s"'#]+)/gm)].map((m) => m[1] ?? ""),
        text: docText,
      });
    }
  }
  return { ok: true, objects, digest: `sha256:${hash.digest("hex")}`, outcome: rolloutOutcome(all) };
}

/** The markers a test commits to choose the cluster's reaction (the same as the Argo CD simulator's). */
function rolloutOutcome(content: string): RolloutOutcome {
  if (content.includes("syncfail")) return "sync-fail";
  if (content.includes("crashloop")) return "crashloop";
  // "hang" as a word of its own, so "change" or "kubernetes.io/change-cause" do not hang a rollout
  if (/(?<![A-Za-z0-9])hang(?![A-Za-z0-9])/.test(content)) return "hang";
  return "healthy";
}

/** inventory.entries: `<namespace>_<name>_<group>_<Kind>` and the version, sorted by id. */
function inventoryOf(objects: ParsedObject[]): { entries: Array<{ id: string; v: string }> } {
  const entries = objects.map((o) => {
    const [group, version] = o.apiVersion.includes("/") ? o.apiVersion.split("/") : ["", o.apiVersion];
    return { id: `${o.namespace}_${o.name}_${group}_${o.kind}`, v: version ?? "" };
  });
  entries.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { entries };
}

/**
 * What the lab's ValidatingAdmissionPolicy makes the server-side apply dry run answer, as kustomize-controller
 * reports it (pinned in the lab, see readme.md).
 */
function admissionRefusal(objects: ParsedObject[]): string {
  const refused =
    objects.find((o) => o.kind === "Deployment" && o.text.includes("syncfail")) ??
    objects.find((o) => o.text.includes("syncfail")) ??
    objects[0];
  const kind = refused?.kind ?? "Deployment";
  const name = refused?.name ?? "unknown";
  const resource = `${kind.toLowerCase()}s${kind === "Deployment" ? ".apps" : ""}`;
  return (
    `${kind}/${refused?.namespace ?? "default"}/${name} dry-run failed (Invalid): ${resource} "${name}" is forbidden: ` +
    "ValidatingAdmissionPolicy 'lab-refuse-syncfail-images' with binding 'lab-refuse-syncfail-images' denied request: " +
    "the lab refuses images tagged syncfail\n"
  );
}

/** The Deployments that never become ready: those carrying the marker, or all of them. */
function stuckDeployments(objects: ParsedObject[]): ParsedObject[] {
  const deployments = objects.filter((o) => o.kind === "Deployment");
  const marked = deployments.filter((o) => o.text.includes("crashloop") || rolloutOutcome(o.text) === "hang");
  return marked.length > 0 ? marked : deployments;
}

interface ChartReport {
  name: string;
  version: string;
  appVersion?: string;
  sha: string;
  digest: string;
  outcome: RolloutOutcome;
  /** the chart renders a Deployment (an upgrade over a deployed release then patches it) */
  hasDeployment: boolean;
}

/** Chart.yaml, the chart's files and the values files at the artifact's commit; undefined without a chart there. */
async function readChart(
  gitDir: string,
  revision: string,
  chartSpec: Record<string, unknown>,
): Promise<ChartReport | undefined> {
  const sha = revision.slice(revision.lastIndexOf(":") + 1);
  const path = normalizePath(String(chartSpec["chart"]));
  const tree = await treeAt(gitDir, sha, path);
  if (tree === undefined) return undefined;
  const show = (spec: string) => git(["--git-dir", gitDir, "cat-file", "blob", spec]).catch(() => undefined);
  const chartYaml = await show(`${sha}:${path === "" ? "" : `${path}/`}Chart.yaml`);
  if (chartYaml === undefined) return undefined;
  let meta: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = parseAllDocuments(chartYaml)[0]?.toJS();
    meta = isPlainObject(parsed) ? parsed : undefined;
  } catch {
    meta = undefined; // a Chart.yaml that does not parse: name and version fall back
  }
  const listing = await git(["--git-dir", gitDir, "ls-tree", "-r", "-z", tree]);
  let all = "";
  for (const line of listing.split("\0")) {
    const match = /^\d+ blob ([0-9a-f]+)\t/.exec(line);
    if (match?.[1]) all += `${await git(["--git-dir", gitDir, "cat-file", "blob", match[1]])}\n`;
  }
  const valuesFiles = Array.isArray(chartSpec["valuesFiles"]) ? chartSpec["valuesFiles"].map(String) : [];
  for (const file of valuesFiles) all += `${(await show(`${sha}:${normalizePath(file)}`)) ?? ""}\n`;
  all += JSON.stringify(chartSpec["values"] ?? {});
  return {
    name: String(meta?.["name"] ?? path.split("/").at(-1)),
    version: String(meta?.["version"] ?? "0.0.0"),
    ...(meta?.["appVersion"] === undefined ? {} : { appVersion: String(meta["appVersion"]) }),
    sha,
    digest: createHash("sha256").update(all).digest("hex"),
    outcome: rolloutOutcome(all),
    hasDeployment: /kind:\s*Deployment/.test(all),
  };
}

/** helm-controller's Snapshots.Truncate: the newest entry, then everything down to the first deployed or superseded one. */
function truncatedHistory(history: ReleaseSnapshot[]): ReleaseSnapshot[] {
  const previous = history.findIndex(
    (h, i) => i > 0 && (h.status === "deployed" || h.status === "superseded"),
  );
  return previous < 0 ? history : history.slice(0, previous + 1);
}

/** What Helm reports when the API server refuses the Deployment (the lab's admission policy), per action. */
function helmRefusal(action: "install" | "upgrade", releaseName: string, existed: boolean): string {
  const refused =
    `deployments.apps "${releaseName}" is forbidden: ValidatingAdmissionPolicy 'lab-refuse-syncfail-images' with ` +
    "binding 'lab-refuse-syncfail-images' denied request: the lab refuses images tagged syncfail";
  if (action === "install") return `1 error occurred:\n\t* ${refused}`;
  return existed
    ? `cannot patch "${releaseName}" with kind Deployment: ${refused}`
    : `failed to create resource: ${refused}`;
}

// ---- patches ----

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return patch;
  const result: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [name, value] of Object.entries(patch)) {
    if (value === null) delete result[name];
    else result[name] = mergePatch(result[name], value);
  }
  return result;
}

/** RFC 6902 JSON patch: add, remove, replace, test (what clients use on annotations). */
function jsonPatch(target: unknown, operations: unknown): unknown {
  if (!Array.isArray(operations)) throw new Error("json patch must be an array of operations");
  let document = structuredClone(target);
  for (const operation of operations as unknown[]) {
    if (!isPlainObject(operation) || typeof operation["path"] !== "string")
      throw new Error("invalid json patch operation");
    const op = operation["op"];
    const segments = operation["path"]
      .split("/")
      .slice(1)
      .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
    const last = segments.pop();
    if (last === undefined) {
      if (op === "replace" || op === "add") document = structuredClone(operation["value"]);
      continue;
    }
    let parent: unknown = document;
    for (const segment of segments) {
      parent =
        isPlainObject(parent) || Array.isArray(parent)
          ? (parent as Record<string, unknown>)[segment]
          : undefined;
      if (parent === undefined) throw new Error(`doc is missing path: ${operation["path"]}`);
    }
    if (!isPlainObject(parent)) throw new Error(`only object members can be patched: ${operation["path"]}`);
    if (op === "add" || op === "replace") {
      if (op === "replace" && !(last in parent))
        throw new Error(`replace operation does not apply: doc is missing key: ${operation["path"]}`);
      parent[last] = structuredClone(operation["value"]);
    } else if (op === "remove") {
      if (!(last in parent))
        throw new Error(`remove operation does not apply: doc is missing path: ${operation["path"]}`);
      delete parent[last];
    } else if (op === "test") {
      if (JSON.stringify(parent[last]) !== JSON.stringify(operation["value"]))
        throw new Error(`testing value ${operation["path"]} failed`);
    } else {
      throw new Error(`unsupported json patch operation ${String(op)}`);
    }
  }
  return document;
}

// ---- small helpers ----

/** encoding/json of an unstructured object: map keys sorted, as the API server writes custom resources. */
function serialize(object: KubeObject): string {
  return JSON.stringify(sortKeys(object));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (!isPlainObject(value)) return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .filter((k) => value[k] !== undefined)
      .map((k) => [k, sortKeys(value[k])]),
  );
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = isKubeObject(body)
    ? serialize(body)
    : JSON.stringify(body, (_k, v: unknown) => (isKubeObject(v) ? sortKeys(v) : v));
  res
    .writeHead(status, { "content-type": "application/json", "cache-control": "no-cache, private" })
    .end(text);
}

function isKubeObject(value: unknown): value is KubeObject {
  return isPlainObject(value) && isPlainObject(value["metadata"]) && "spec" in value && "status" in value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isStringMap(value: unknown): value is Record<string, string> {
  return isPlainObject(value) && Object.values(value).every((v) => typeof v === "string");
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (text += chunk));
    req.on("end", () => resolve(text));
    req.on("error", reject);
  });
}

function parseMaybe(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function rfc3339(date = new Date()): string {
  return date.toISOString().replace(/\.\d+Z$/, "Z");
}

/** spec.timeout, else spec.interval; never less than 30s (Kustomization.GetTimeout). */
function effectiveTimeout(spec: Record<string, unknown>): number {
  const asked = goDurationMs(String(spec["timeout"] ?? spec["interval"] ?? "")) ?? MIN_TIMEOUT_MS;
  return Math.max(asked, MIN_TIMEOUT_MS);
}

/** A Go duration ("1h", "1m30s", "500ms", "2.5s") in ms; undefined when it is not one. */
export function goDurationMs(text: string): number | undefined {
  const units: Record<string, number> = {
    ns: 1e-6,
    us: 1e-3,
    µs: 1e-3,
    ms: 1,
    s: 1_000,
    m: 60_000,
    h: 3_600_000,
  };
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(amount) * (units[unit ?? ""] ?? 0);
  }
  return total;
}

/**
 * Go's time.Duration.String(): "30s", "1m0s", "1h0m0s", "408.098949ms", "30.012345678s". `nanos` adds the
 * sub-millisecond digits a real measurement has.
 */
export function formatGoDuration(ms: number, nanos = false): string {
  let ns = Math.round(ms * 1e6);
  if (nanos && ns % 1_000_000 === 0) ns += Math.floor(1 + Math.random() * 999_998);
  if (ns === 0) return "0s";
  if (ns < 1_000_000_000) {
    if (ns < 1_000) return `${ns}ns`;
    if (ns < 1_000_000) return `${trimFraction(ns / 1_000)}µs`;
    return `${trimFraction(ns / 1_000_000)}ms`;
  }
  const hours = Math.floor(ns / 3.6e12);
  const minutes = Math.floor((ns % 3.6e12) / 6e10);
  const seconds = trimFraction((ns % 6e10) / 1e9);
  if (hours > 0) return `${hours}h${minutes}m${seconds}s`;
  if (minutes > 0) return `${minutes}m${seconds}s`;
  return `${seconds}s`;
}

function trimFraction(value: number): string {
  return value.toFixed(9).replace(/\.?0+$/, "");
}

function nonNegative(value: number | undefined, fallback: number, name: string): number {
  const result = value ?? fallback;
  if (!Number.isFinite(result) || result < 0)
    throw new Error(`FluxSimulator: options.${name} must be a non-negative number`);
  return result;
}
