import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { freePort } from "../support/nats-server.js";
import type { GitopsSetup } from "../e2e/argocd-backend.js";
import {
  FLUX_HELM_RELEASES,
  FLUX_KUSTOMIZATIONS,
  FLUX_RECEIVER_TOKEN,
  receiverKeyFor,
  type FluxBackendOptions,
} from "../e2e/flux-backend.js";
import { documented } from "./documented.js";
import type { FluxBackend, FluxBackendFactory } from "../e2e/world.js";
import { KubeLab, SYNCFAIL_POLICY, type KubeObject } from "./kube-lab.js";
import { LabProcess } from "./lab-process.js";
import { labDir, requireLabBinaries } from "./lab-paths.js";

/** The namespace the controllers run for (RUNTIME_NAMESPACE) and where the lab puts its Flux objects. */
export const FLUX_NAMESPACE = "flux-system";

/** Binaries `npm run lab:build` must have produced for the Flux lab. */
export const FLUX_LAB_BINARIES = ["kube-apiserver", "source-controller", "kustomize-controller"] as const;

/** The binary the Flux lab needs in addition when it starts with `{ notifications: true }`. */
export const FLUX_NOTIFICATION_BINARY = "notification-controller";

/** The binary the Flux lab needs in addition when it starts with `{ helm: true }` (v1.4.3, see components.ts). */
export const FLUX_HELM_BINARY = "helm-controller";

/** notification-controller's kinds, written with a plain POST (KubeLab.apply does not know their resource paths). */
const NOTIFICATION_KINDS = {
  Provider: { apiVersion: "notification.toolkit.fluxcd.io/v1beta3", plural: "providers" },
  Alert: { apiVersion: "notification.toolkit.fluxcd.io/v1beta3", plural: "alerts" },
  Receiver: { apiVersion: "notification.toolkit.fluxcd.io/v1", plural: "receivers" },
} as const;
type NotificationKind = keyof typeof NOTIFICATION_KINDS;

/** The Flux kinds the lab writes, with their API group version and resource path. */
const FLUX_KINDS = {
  GitRepository: { apiVersion: "source.toolkit.fluxcd.io/v1", plural: "gitrepositories" },
  Kustomization: { apiVersion: "kustomize.toolkit.fluxcd.io/v1", plural: "kustomizations" },
  HelmRelease: { apiVersion: "helm.toolkit.fluxcd.io/v2", plural: "helmreleases" },
  /** Written by helm-controller (`<namespace>-<HelmRelease name>`), built by source-controller. */
  HelmChart: { apiVersion: "source.toolkit.fluxcd.io/v1", plural: "helmcharts" },
} as const;
export type FluxKind = keyof typeof FLUX_KINDS;

/** metav1.Condition, as Flux writes them. */
export interface FluxCondition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

export interface FluxArtifact {
  digest: string;
  lastUpdateTime: string;
  path: string;
  revision: string;
  size: number;
  url: string;
  [key: string]: unknown;
}

interface FluxObjectMeta {
  name: string;
  namespace?: string;
  generation?: number;
  resourceVersion?: string;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

export interface GitRepositoryObject extends KubeObject {
  metadata: FluxObjectMeta;
  spec: Record<string, unknown>;
  status?: {
    artifact?: FluxArtifact;
    conditions?: FluxCondition[];
    observedGeneration?: number;
    lastHandledReconcileAt?: string;
    [key: string]: unknown;
  };
}

export interface KustomizationObject extends KubeObject {
  metadata: FluxObjectMeta;
  spec: Record<string, unknown>;
  status?: {
    conditions?: FluxCondition[];
    observedGeneration?: number;
    lastAppliedRevision?: string;
    lastAttemptedRevision?: string;
    lastHandledReconcileAt?: string;
    inventory?: { entries: Array<{ id: string; v: string }> };
    history?: Array<Record<string, unknown>>;
    [key: string]: unknown;
  };
}

/** status.history[] of a HelmRelease: one snapshot per Helm release version, newest first. */
export interface HelmReleaseSnapshot {
  chartName: string;
  chartVersion: string;
  configDigest: string;
  digest: string;
  name: string;
  namespace: string;
  status: string;
  version: number;
  [key: string]: unknown;
}

export interface HelmReleaseObject extends KubeObject {
  metadata: FluxObjectMeta;
  spec: Record<string, unknown>;
  status?: {
    conditions?: FluxCondition[];
    observedGeneration?: number;
    lastAttemptedRevision?: string;
    lastAttemptedGeneration?: number;
    lastAttemptedReleaseAction?: string;
    lastHandledReconcileAt?: string;
    helmChart?: string;
    history?: HelmReleaseSnapshot[];
    failures?: number;
    [key: string]: unknown;
  };
}

export interface HelmChartObject extends KubeObject {
  metadata: FluxObjectMeta;
  spec: Record<string, unknown>;
  status?: {
    artifact?: FluxArtifact;
    conditions?: FluxCondition[];
    observedGeneration?: number;
    observedSourceArtifactRevision?: string;
    [key: string]: unknown;
  };
}

interface FluxObjects {
  GitRepository: GitRepositoryObject;
  Kustomization: KustomizationObject;
  HelmRelease: HelmReleaseObject;
  HelmChart: HelmChartObject;
}

export interface GitRepositoryOptions {
  name: string;
  url: string;
  branch?: string;
  /** HTTP Basic credentials, stored in a Secret `<name>-auth` that `spec.secretRef` names. */
  username: string;
  password: string;
  /** Default 1h: in the lab only reconcile requests drive it. */
  interval?: string;
}

export interface KustomizationOptions {
  name: string;
  /** The GitRepository to build from. */
  source: string;
  path: string;
  /** Default 1h: in the lab only reconcile requests and new source revisions drive it. */
  interval?: string;
  prune?: boolean;
  wait?: boolean;
  healthChecks?: Array<{ apiVersion: string; kind: string; name: string; namespace?: string }>;
  timeout?: string;
}

/** A HelmRelease whose chart is a directory of a GitRepository (helm-controller makes the HelmChart from it). */
export interface HelmReleaseOptions {
  name: string;
  /** The GitRepository holding the chart. */
  source: string;
  /** `spec.chart.spec.chart`: the chart's directory in the repository. */
  chart: string;
  /** `spec.chart.spec.valuesFiles`: paths in the repository, merged in order. */
  valuesFiles?: string[];
  /** `spec.chart.spec.reconcileStrategy`; the CRD's default is ChartVersion. */
  reconcileStrategy?: "ChartVersion" | "Revision";
  /** `spec.targetNamespace`: the release is then `<targetNamespace>-<name>` in that namespace. */
  targetNamespace?: string;
  /** Default 1h: in the lab only reconcile requests and new chart versions drive it. */
  interval?: string;
  /** `spec.timeout` of the Helm actions; helm-controller's default is 5m0s. */
  timeout?: string;
  /** `spec.install`: `disableWait` is needed in the lab, where no Deployment ever becomes ready. */
  install?: { createNamespace?: boolean; disableWait?: boolean };
  /** `spec.upgrade` */
  upgrade?: { disableWait?: boolean };
}

export interface FluxLabOptions {
  /**
   * Also start notification-controller (first), and point source-controller and kustomize-controller at its event
   * server with `--events-addr`. Default false: the controllers then send no events anywhere.
   */
  notifications?: boolean;
  /**
   * Also start helm-controller (last), with the HelmRelease CRD; the HelmChart CRD comes with source-controller's.
   * Default false.
   */
  helm?: boolean;
}

export interface ProviderOptions {
  name: string;
  type: "generic" | "generic-hmac";
  /** Where notification-controller POSTs the events. */
  address: string;
  /** Stored as key `token` in a Secret `<name>-token` that `spec.secretRef` names; `generic-hmac` needs one. */
  token?: string;
}

export interface AlertOptions {
  name: string;
  /** The Provider to send to. */
  provider: string;
  /** `info`: every event; `error`: errors only. */
  eventSeverity: "info" | "error";
  eventSources: Array<{ kind: string; name: string; namespace?: string }>;
}

/** One change of a watched object: the API server sends each written version in order. */
export interface WatchedChange<T> {
  type: "ADDED" | "MODIFIED" | "DELETED";
  object: T;
  /** Date.now() when it arrived. */
  at: number;
}

export interface ObjectWatch<T> {
  /** The object as read just before the watch began. */
  readonly initial: T;
  /** Every version written after `initial`, in order. */
  readonly changes: WatchedChange<T>[];
  stop(): void;
}

/** The condition of that type, if the object has it. */
export function fluxCondition(
  object: { status?: { conditions?: FluxCondition[] } },
  type: string,
): FluxCondition | undefined {
  return object.status?.conditions?.find((c) => c.type === type);
}

/**
 * Flux's source-controller and kustomize-controller, built by `npm run lab:build`, as plain processes against the
 * lab's kube-apiserver: RUNTIME_NAMESPACE=flux-system, no leader election, health, metrics and the artifact server
 * of source-controller on free loopback ports. No events address, unless `{ notifications: true }` also starts
 * notification-controller (event server and webhook receiver on free loopback ports too).
 */
export class FluxLab {
  private constructor(
    private readonly kube: KubeLab,
    /** Where kustomize-controller downloads artifacts from: `http://127.0.0.1:<port>`. */
    readonly storageUrl: string,
    private readonly processes: LabProcess[],
    /** notification-controller's event server, `http://127.0.0.1:<port>/`; undefined without notifications. */
    readonly eventsUrl?: string,
    /** notification-controller's Receiver server, `http://127.0.0.1:<port>`; undefined without notifications. */
    readonly receiverUrl?: string,
  ) {}

  static async start(kube: KubeLab, dir: string, options: FluxLabOptions = {}): Promise<FluxLab> {
    await kube.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: FLUX_NAMESPACE } });
    await kube.installCrds(join(labDir(), "crds", "source-controller"));
    await kube.installCrds(join(labDir(), "crds", "kustomize-controller"));
    if (options.notifications) await kube.installCrds(join(labDir(), "crds", "notification-controller"));
    if (options.helm) await kube.installCrds(join(labDir(), "crds", "helm-controller"));

    const env: NodeJS.ProcessEnv = {
      ...process.env,
      KUBECONFIG: kube.kubeconfig,
      RUNTIME_NAMESPACE: FLUX_NAMESPACE,
    };
    const processes: LabProcess[] = [];
    try {
      let eventsUrl: string | undefined;
      let receiverUrl: string | undefined;
      if (options.notifications) {
        const [health, metrics, eventsPort, receiverPort] = [
          await freePort(),
          await freePort(),
          await freePort(),
          await freePort(),
        ];
        eventsUrl = `http://127.0.0.1:${eventsPort}/`;
        receiverUrl = `http://127.0.0.1:${receiverPort}`;
        const events = eventsUrl;
        processes.push(
          await LabProcess.start({
            name: "notification-controller",
            command: join(labDir(), "bin", FLUX_NOTIFICATION_BINARY),
            args: [
              ...commonArgs(health, metrics),
              `--events-addr=127.0.0.1:${eventsPort}`,
              `--receiverAddr=127.0.0.1:${receiverPort}`,
            ],
            dir,
            env,
            // Ready once the manager answers /readyz and the event server listens (any answer will do).
            ready: async () =>
              (await fetch(`http://127.0.0.1:${health}/readyz`)).ok &&
              (await fetch(events).then(
                () => true,
                () => false,
              )),
          }),
        );
      }
      const eventsArgs = eventsUrl === undefined ? [] : [`--events-addr=${eventsUrl}`];
      const storagePath = join(dir, "flux-storage");
      await mkdir(storagePath, { recursive: true });
      const [sourceHealth, sourceMetrics, storagePort] = [
        await freePort(),
        await freePort(),
        await freePort(),
      ];
      const storageUrl = `http://127.0.0.1:${storagePort}`;
      processes.push(
        await LabProcess.start({
          name: "source-controller",
          command: join(labDir(), "bin", "source-controller"),
          args: [
            ...commonArgs(sourceHealth, sourceMetrics),
            `--storage-path=${storagePath}`,
            `--storage-addr=127.0.0.1:${storagePort}`,
            `--storage-adv-addr=127.0.0.1:${storagePort}`,
            ...eventsArgs,
          ],
          dir,
          env,
          // Ready once the manager answers /readyz and the artifact server listens (any answer will do).
          ready: async () =>
            (await fetch(`http://127.0.0.1:${sourceHealth}/readyz`)).ok &&
            (await fetch(storageUrl).then(
              () => true,
              () => false,
            )),
        }),
      );
      const [kustomizeHealth, kustomizeMetrics] = [await freePort(), await freePort()];
      processes.push(
        await LabProcess.start({
          name: "kustomize-controller",
          command: join(labDir(), "bin", "kustomize-controller"),
          args: [...commonArgs(kustomizeHealth, kustomizeMetrics), ...eventsArgs],
          dir,
          env,
          ready: async () => (await fetch(`http://127.0.0.1:${kustomizeHealth}/readyz`)).ok,
        }),
      );
      if (options.helm) {
        // helm-controller talks to the lab's API server both as a manager and as Helm (the KUBECONFIG of `env`), and
        // downloads the charts from source-controller's artifact server at the advertised loopback address.
        const [helmHealth, helmMetrics] = [await freePort(), await freePort()];
        processes.push(
          await LabProcess.start({
            name: "helm-controller",
            command: join(labDir(), "bin", FLUX_HELM_BINARY),
            args: [...commonArgs(helmHealth, helmMetrics), ...eventsArgs],
            dir,
            env,
            ready: async () => (await fetch(`http://127.0.0.1:${helmHealth}/readyz`)).ok,
          }),
        );
      }
      return new FluxLab(kube, storageUrl, processes, eventsUrl, receiverUrl);
    } catch (error) {
      for (const started of processes.reverse()) await started.stop();
      throw error;
    }
  }

  /** The Secret with the credentials, then the GitRepository (`spec.ref.branch`, `spec.secretRef`). */
  async createGitRepository(options: GitRepositoryOptions): Promise<GitRepositoryObject> {
    const secretName = `${options.name}-auth`;
    await this.kube.apply({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: secretName, namespace: FLUX_NAMESPACE },
      stringData: { username: options.username, password: options.password },
    });
    return (await this.kube.apply({
      apiVersion: FLUX_KINDS.GitRepository.apiVersion,
      kind: "GitRepository",
      metadata: { name: options.name, namespace: FLUX_NAMESPACE },
      spec: {
        url: options.url,
        ref: { branch: options.branch ?? "main" },
        interval: options.interval ?? "1h",
        secretRef: { name: secretName },
      },
    })) as GitRepositoryObject;
  }

  async createKustomization(options: KustomizationOptions): Promise<KustomizationObject> {
    return (await this.kube.apply({
      apiVersion: FLUX_KINDS.Kustomization.apiVersion,
      kind: "Kustomization",
      metadata: { name: options.name, namespace: FLUX_NAMESPACE },
      spec: {
        sourceRef: { kind: "GitRepository", name: options.source },
        path: options.path,
        interval: options.interval ?? "1h",
        prune: options.prune ?? true,
        ...(options.wait === undefined ? {} : { wait: options.wait }),
        ...(options.healthChecks === undefined ? {} : { healthChecks: options.healthChecks }),
        ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
      },
    })) as KustomizationObject;
  }

  /** A HelmRelease (v2) with its chart from a GitRepository (`spec.chart.spec.sourceRef`). */
  async createHelmRelease(options: HelmReleaseOptions): Promise<HelmReleaseObject> {
    const { apiVersion, plural } = FLUX_KINDS.HelmRelease;
    const answer = await this.kube.request<HelmReleaseObject>(
      "POST",
      `/apis/${apiVersion}/namespaces/${FLUX_NAMESPACE}/${plural}`,
      {
        apiVersion,
        kind: "HelmRelease",
        metadata: { name: options.name, namespace: FLUX_NAMESPACE },
        spec: {
          interval: options.interval ?? "1h",
          chart: {
            spec: {
              chart: options.chart,
              sourceRef: { kind: "GitRepository", name: options.source },
              interval: options.interval ?? "1h",
              ...(options.reconcileStrategy === undefined
                ? {}
                : { reconcileStrategy: options.reconcileStrategy }),
              ...(options.valuesFiles === undefined ? {} : { valuesFiles: options.valuesFiles }),
            },
          },
          ...(options.targetNamespace === undefined ? {} : { targetNamespace: options.targetNamespace }),
          ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
          ...(options.install === undefined ? {} : { install: options.install }),
          ...(options.upgrade === undefined ? {} : { upgrade: options.upgrade }),
        },
      },
    );
    if (answer.status !== 201) {
      throw new Error(
        `creating HelmRelease/${options.name}: ${answer.status} ${JSON.stringify(answer.body)}`,
      );
    }
    return answer.body;
  }

  /** A notification-controller Provider (v1beta3), with the Secret `<name>-token` when a token is given. */
  async createProvider(options: ProviderOptions): Promise<KubeObject> {
    const secretName = `${options.name}-token`;
    if (options.token !== undefined) {
      await this.kube.apply({
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: secretName, namespace: FLUX_NAMESPACE },
        stringData: { token: options.token },
      });
    }
    return this.createNotificationObject("Provider", options.name, {
      type: options.type,
      address: options.address,
      ...(options.token === undefined ? {} : { secretRef: { name: secretName } }),
    });
  }

  /**
   * A notification-controller Receiver from its manifest (with its Secret, if given), once it is Ready: resolves
   * with its URL on the lab's receiver server (`status.webhookPath`).
   */
  async createReceiver(receiver: KubeObject, secret?: KubeObject): Promise<string> {
    if (this.receiverUrl === undefined)
      throw new Error("the Flux lab runs a Receiver only with { notifications: true }");
    if (secret) await this.kube.apply(secret);
    const name = receiver.metadata.name;
    await this.createNotificationObject(
      "Receiver",
      name,
      (receiver as { spec?: Record<string, unknown> }).spec ?? {},
    );
    const { apiVersion, plural } = NOTIFICATION_KINDS.Receiver;
    const path = `/apis/${apiVersion}/namespaces/${FLUX_NAMESPACE}/${plural}/${name}`;
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; await delay(100)) {
      const answer = await this.kube.request<{
        status?: { webhookPath?: string; conditions?: FluxCondition[] };
      }>("GET", path);
      const status = answer.body.status;
      if (status?.webhookPath && fluxCondition({ status }, "Ready")?.status === "True") {
        return `${this.receiverUrl}${status.webhookPath}`;
      }
    }
    throw new Error(`Receiver ${name} did not become Ready with a webhookPath in 30 s`);
  }

  /** A notification-controller Alert (v1beta3): which events go to which Provider. */
  createAlert(options: AlertOptions): Promise<KubeObject> {
    return this.createNotificationObject("Alert", options.name, {
      providerRef: { name: options.provider },
      eventSeverity: options.eventSeverity,
      eventSources: options.eventSources,
    });
  }

  private async createNotificationObject(
    kind: NotificationKind,
    name: string,
    spec: Record<string, unknown>,
  ): Promise<KubeObject> {
    const { apiVersion, plural } = NOTIFICATION_KINDS[kind];
    const answer = await this.kube.request<KubeObject>(
      "POST",
      `/apis/${apiVersion}/namespaces/${FLUX_NAMESPACE}/${plural}`,
      { apiVersion, kind, metadata: { name, namespace: FLUX_NAMESPACE }, spec },
    );
    if (answer.status !== 201) {
      throw new Error(`creating ${kind}/${name}: ${answer.status} ${JSON.stringify(answer.body)}`);
    }
    return answer.body;
  }

  gitRepository(name: string): Promise<GitRepositoryObject> {
    return this.get("GitRepository", name);
  }

  kustomization(name: string): Promise<KustomizationObject> {
    return this.get("Kustomization", name);
  }

  helmRelease(name: string): Promise<HelmReleaseObject> {
    return this.get("HelmRelease", name);
  }

  async get<K extends FluxKind>(kind: K, name: string): Promise<FluxObjects[K]> {
    const answer = await this.kube.request<FluxObjects[K]>("GET", objectPath(kind, name));
    if (answer.status !== 200) {
      throw new Error(`reading ${kind}/${name}: ${answer.status} ${JSON.stringify(answer.body)}`);
    }
    return answer.body;
  }

  /**
   * What `flux reconcile` does: a merge-patch of `reconcile.fluxcd.io/requestedAt` with the current time in RFC 3339
   * with nanoseconds. Resolves with the value written, which the controller echoes in `status.lastHandledReconcileAt`.
   */
  async requestReconcile(kind: FluxKind, name: string, requestedAt = nowRfc3339Nano()): Promise<string> {
    const answer = await this.kube.request(
      "PATCH",
      objectPath(kind, name),
      { metadata: { annotations: { "reconcile.fluxcd.io/requestedAt": requestedAt } } },
      "application/merge-patch+json",
    );
    if (answer.status !== 200) {
      throw new Error(
        `requesting a reconcile of ${kind}/${name}: ${answer.status} ${JSON.stringify(answer.body)}`,
      );
    }
    return requestedAt;
  }

  /**
   * Watches one object (`?watch=1&fieldSelector=metadata.name=<n>&resourceVersion=<rv>`, as F3 describes) from its
   * current version on and records every version the API server sends. Unlike polling, no write is missed.
   */
  async watch<K extends FluxKind>(kind: K, name: string): Promise<ObjectWatch<FluxObjects[K]>> {
    const current = await this.get(kind, name);
    const changes: WatchedChange<FluxObjects[K]>[] = [];
    const query = new URLSearchParams({
      watch: "1",
      fieldSelector: `metadata.name=${name}`,
      resourceVersion: current.metadata.resourceVersion ?? "0",
    });
    const { plural, apiVersion } = FLUX_KINDS[kind];
    const path = `/apis/${apiVersion}/namespaces/${FLUX_NAMESPACE}/${plural}?${query.toString()}`;
    const req = httpsRequest(new URL(path, this.kube.url), {
      ca: this.kube.ca,
      headers: { authorization: `Bearer ${this.kube.token}`, accept: "application/json" },
    });
    await new Promise<void>((resolve, reject) => {
      req.once("error", reject);
      req.once("response", (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`watching ${kind}/${name}: ${res.statusCode}`));
          return;
        }
        let buffered = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          buffered += chunk;
          let newline: number;
          while ((newline = buffered.indexOf("\n")) >= 0) {
            const line = buffered.slice(0, newline).trim();
            buffered = buffered.slice(newline + 1);
            if (!line) continue;
            const event = JSON.parse(line) as { type: string; object: FluxObjects[K] };
            if (event.type === "ADDED" || event.type === "MODIFIED" || event.type === "DELETED") {
              changes.push({ type: event.type, object: event.object, at: Date.now() });
            }
          }
        });
        res.on("error", () => undefined); // ends with stop()
        resolve();
      });
      req.end();
    });
    req.removeAllListeners("error");
    req.on("error", () => undefined);
    return { initial: current, changes, stop: () => req.destroy() };
  }

  /** Resolves once the HelmRelease has a deployed release and nothing in progress; fails on a failed install. */
  async waitForInstall(name: string, timeoutMs: number): Promise<HelmReleaseObject> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hr = await this.helmRelease(name);
      const ready = fluxCondition(hr, "Ready");
      if (
        hr.status?.history?.[0]?.status === "deployed" &&
        ready?.status === "True" &&
        hr.status.observedGeneration === hr.metadata.generation &&
        !fluxCondition(hr, "Reconciling")
      )
        return hr;
      if (ready?.status === "False" && ready.reason !== "SourceNotReady")
        throw new Error(`HelmRelease ${name} was not installed: ${ready.reason}: ${ready.message}`);
      if (Date.now() > deadline)
        throw new Error(
          `HelmRelease ${name} not installed within ${timeoutMs} ms: ${JSON.stringify(hr.status)}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  async stop(): Promise<void> {
    for (const started of [...this.processes].reverse()) await started.stop();
  }
}

function commonArgs(healthPort: number, metricsPort: number): string[] {
  return [
    `--health-addr=127.0.0.1:${healthPort}`,
    `--metrics-addr=127.0.0.1:${metricsPort}`,
    "--enable-leader-election=false",
    "--log-encoding=json",
  ];
}

function objectPath(kind: FluxKind, name: string): string {
  const { apiVersion, plural } = FLUX_KINDS[kind];
  return `/apis/${apiVersion}/namespaces/${FLUX_NAMESPACE}/${plural}/${name}`;
}

/** RFC 3339 with nanoseconds in UTC, as Go's time.RFC3339Nano prints it (JavaScript clocks stop at ms). */
function nowRfc3339Nano(): string {
  const now = new Date().toISOString(); // 2024-07-12T08:56:29.512Z
  const subMillisecond = String(process.hrtime.bigint() % 1_000_000n).padStart(6, "0");
  return now.replace("Z", `${subMillisecond}Z`);
}

/**
 * The real Flux of the lab as a backend of the deployment scenarios (test/e2e/flux-scenarios.ts,
 * test/e2e/helm-release-scenarios.ts): a KubeLab of its own with the syncfail admission policy, source-controller
 * and kustomize-controller, the GitRepository `gitops` and the Kustomizations of FLUX_KUSTOMIZATIONS. With
 * `{ helm: true }` also helm-controller and the HelmReleases of FLUX_HELM_RELEASES, installed before it resolves.
 */
export function fluxLabBackend(options: FluxLabOptions & FluxBackendOptions = {}): FluxBackendFactory {
  return async (setup: GitopsSetup): Promise<FluxBackend> => {
    await requireLabBinaries([
      ...FLUX_LAB_BINARIES,
      ...(options.notifications ? [FLUX_NOTIFICATION_BINARY] : []),
      ...(options.helm ? [FLUX_HELM_BINARY] : []),
    ]);
    const dir = await mkdtemp(join(tmpdir(), "lab-flux-flow-"));
    const kube = await KubeLab.start(dir);
    try {
      for (const object of SYNCFAIL_POLICY) await kube.apply(object);
      const flux = await FluxLab.start(kube, dir, options);
      await flux.createGitRepository({
        name: "gitops",
        url: setup.repoUrl,
        username: setup.gitUsername,
        password: setup.gitToken,
      });
      for (const k of FLUX_KUSTOMIZATIONS) {
        await flux.createKustomization({
          name: k.name,
          source: "gitops",
          path: k.path,
          wait: k.wait,
          timeout: "30s",
        });
      }
      if (options.helm) {
        for (const hr of FLUX_HELM_RELEASES) await flux.createHelmRelease(hr);
        // The scenarios start from installed releases: the first install of the seed commit is not theirs to race.
        for (const hr of FLUX_HELM_RELEASES) await flux.waitForInstall(hr.name, 120_000);
      }
      // The Receiver and its Secret exactly as docs/notifications.md has them, with the lab's token.
      const receiver = options.receiver
        ? {
            url: await flux.createReceiver((await documented("Receiver", "keptn-gitops")) as KubeObject, {
              ...((await documented("Secret", "keptn-gitops-receiver")) as KubeObject),
              stringData: { token: FLUX_RECEIVER_TOKEN },
            }),
            hmacKey: receiverKeyFor(options.receiver),
          }
        : undefined;
      return {
        kubeconfig: kube.kubeconfig,
        ...(receiver ? { receiver } : {}),
        kustomization: (name) => flux.kustomization(name),
        gitRepository: (name) => flux.gitRepository(name),
        helmRelease: (name) => flux.helmRelease(name),
        ...(options.notifications
          ? {
              sendNotifications: async (url: string, hmacKey: string) => {
                await flux.createProvider({
                  name: "keptn",
                  type: "generic-hmac",
                  address: url,
                  token: hmacKey,
                });
                await flux.createAlert({
                  name: "keptn",
                  provider: "keptn",
                  eventSeverity: "info",
                  eventSources: [{ kind: "Kustomization", name: "*" }],
                });
              },
            }
          : {}),
        stop: async () => {
          await flux.stop();
          await kube.stop();
          await rm(dir, { recursive: true, force: true });
        },
      };
    } catch (error) {
      await kube.stop();
      throw error;
    }
  };
}
