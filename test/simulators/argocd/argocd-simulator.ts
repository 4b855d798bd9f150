import { execFile } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { promisify } from "node:util";
import express from "express";
import type { NextFunction, Request, Response } from "express";
import { z } from "zod";

// A stand-in for argocd-server + application-controller. It speaks the REST shapes of Argo CD
// (assets/swagger.json, encoding/json of v1alpha1.Application) and reads a real bare git repo with the
// git CLI, so "Synced" means the commit really landed. See readme.md next to this file.

export interface SimulatedApp {
  name: string;
  /** metadata.namespace, default "argocd" */
  namespace?: string;
  /** spec.project, default "default" */
  project?: string;
  /** what spec.source.repoURL reports (e.g. the http URL the service pushes to) */
  repoURL: string;
  /** filesystem path of the bare repo the simulator reads */
  gitDir: string;
  /** branch (or tag, or SHA), default "main" */
  targetRevision?: string;
  /** directory inside the repo that this app deploys */
  path: string;
  /**
   * spec.source.helm.valueFiles. Helm renders a chart with `values.yaml` and these, so the other `values*.yaml`
   * files at the top of `path` (another stage's) are left out of the comparison and of the markers.
   */
  valueFiles?: string[];
  /** spec.syncPolicy.automated present, default true */
  automated?: boolean;
  /**
   * spec.syncPolicy.retry. Without it an automated sync still retries: Argo CD v3 gives automated operations
   * `{limit: 5}` (backoff 5s, factor 2, at most 3m), as the real controller does.
   */
  retry?: RetryStrategyJson;
  /**
   * spec.ignoreDifferences. Only a Deployment container image pointer (`/spec/template/spec/containers/N/image`)
   * is honoured: the comparison then leaves out `image:` lines and Helm values' `repository:` and `tag:` lines.
   */
  ignoreDifferences?: IgnoreDifferenceJson[];
}

/** One entry of spec.ignoreDifferences (ResourceIgnoreDifferences). */
export interface IgnoreDifferenceJson {
  group?: string;
  kind: string;
  name?: string;
  namespace?: string;
  jsonPointers?: string[];
}

/** The health a live Deployment can be given from outside (`setLiveHealth`). */
export type LiveHealth = "Healthy" | "Progressing" | "Degraded" | "Suspended";

export interface ArgoCdSimulatorOptions {
  /** accepted Bearer token (also accepted as the `argocd.token` cookie) */
  token: string;
  apps: SimulatedApp[];
  /** how often every app is compared with git (real Argo CD: 3 min; default 250) */
  pollIntervalMs?: number;
  /** operation Running -> completed (default 200) */
  syncDurationMs?: number;
  /** Progressing -> final health after a successful sync (default 200) */
  healthDelayMs?: number;
  /** SSE keepalive comment interval (real Argo CD: 15 s; default 15000) */
  keepaliveIntervalMs?: number;
  /** default 127.0.0.1 */
  host?: string;
  /** default 0 = a free port */
  port?: number;
}

export type SettledPhase = "Succeeded" | "Failed";

export interface SettledEvent {
  app: string;
  revision: string;
  phase: SettledPhase;
  health: string;
  /** performance.now() when the status first showed the outcome */
  at: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  body?: unknown;
}

type SyncStatusCode = "Synced" | "OutOfSync" | "Unknown";
type HealthStatusCode = "Healthy" | "Progressing" | "Degraded" | "Suspended" | "Missing" | "Unknown";
type OperationPhase = "Running" | "Terminating" | "Failed" | "Error" | "Succeeded";
type WatchEventType = "ADDED" | "MODIFIED" | "DELETED";
/** what the committed content under `path` makes the simulated cluster do */
type RolloutOutcome = "sync-fail" | "hook-fail" | "crashloop" | "hang" | "healthy";

// ---- JSON shapes (field order follows the Go structs, so the output reads like the real thing) ----

interface ApplicationSourceJson {
  repoURL: string;
  path: string;
  targetRevision: string;
  helm?: { valueFiles: string[] };
}
interface DestinationJson {
  server: string;
  namespace: string;
}
interface InitiatorJson {
  username?: string;
  automated?: boolean;
}
export interface RetryStrategyJson {
  limit?: number;
  backoff?: { duration?: string; factor?: number; maxDuration?: string };
  refresh?: boolean;
}
interface SyncOperationJson {
  revision: string;
  prune?: boolean;
  dryRun?: boolean;
  syncStrategy?: Record<string, unknown>;
  resources?: Array<Record<string, unknown>>;
  syncOptions?: string[];
}
interface OperationJson {
  sync: SyncOperationJson;
  initiatedBy: InitiatorJson;
  info?: Array<{ name: string; value: string }>;
  retry: RetryStrategyJson;
}
interface ResourceResultJson {
  group: string;
  version: string;
  kind: string;
  namespace: string;
  name: string;
  status: string;
  message: string;
  hookType?: string;
  hookPhase: string;
  syncPhase: string;
  images?: string[];
}
interface SyncResultJson {
  resources?: ResourceResultJson[];
  revision: string;
  source: ApplicationSourceJson;
}
interface OperationStateJson {
  operation: OperationJson;
  phase: OperationPhase;
  message?: string;
  syncResult?: SyncResultJson;
  startedAt: string;
  finishedAt?: string;
  /** failed attempts retried so far (omitted while 0) */
  retryCount?: number;
}
interface HealthJson {
  status?: HealthStatusCode;
  message?: string;
  lastTransitionTime?: string;
}
interface ConditionJson {
  type: "ComparisonError" | "SyncError";
  message: string;
  lastTransitionTime: string;
}
interface HistoryJson {
  revision: string;
  deployedAt: string;
  id: number;
  source: ApplicationSourceJson;
  deployStartedAt: string;
  initiatedBy: InitiatorJson;
}
interface ApplicationJson {
  metadata: Record<string, unknown>;
  spec: Record<string, unknown>;
  status: Record<string, unknown>;
  operation?: OperationJson;
}

// ---- internal state ----

interface AppConfig {
  name: string;
  namespace: string;
  project: string;
  repoURL: string;
  gitDir: string;
  targetRevision: string;
  path: string;
  valueFiles?: string[];
  automated: boolean;
  retry?: RetryStrategyJson;
  ignoreDifferences?: IgnoreDifferenceJson[];
  /** an ignoreDifferences entry covers a container image */
  ignoresImages: boolean;
}

interface LiveState {
  revision: string;
  /** what the comparison looks at: the files of `path` that the app renders (`renderedFiles`) */
  key: string;
  images: string[];
  /** the content with image references left out, for apps that ignore image differences */
  withoutImages: string;
}

interface AppRecord {
  config: AppConfig;
  uid: string;
  creationTimestamp: string;
  resourceVersion: number;
  generation: number;
  /** last published JSON of the Application */
  json: string;
  /** top-level `operation`: set while a sync is requested or running */
  operation?: OperationJson;
  operationState?: OperationStateJson;
  /** increases with every operation; timers of an older one become no-ops */
  operationSeq: number;
  syncStatus?: SyncStatusCode;
  syncRevision?: string;
  headTree?: string;
  /** `LiveState.key` of the head */
  headKey?: string;
  reconciledAt?: string;
  conditions: ConditionJson[];
  health: HealthJson;
  /** what the simulated cluster runs: the last successfully synced revision */
  live?: LiveState;
  /** increases with every successful sync; the health timer of an older rollout becomes a no-op */
  rolloutSeq: number;
  /** the health the rollout of the live revision has reached */
  rolloutHealth?: { status: HealthStatusCode; message?: string };
  /** a health given to the live Deployment from outside (`setLiveHealth`); wins over the rollout's */
  liveHealth?: LiveHealth;
  /** the `argocd.argoproj.io/refresh` annotation a `?refresh=` request sets until the comparison */
  refreshRequested?: "normal" | "hard";
  /** a deny sync window matches the app (`denySyncs`) */
  syncsDenied: boolean;
  history: HistoryJson[];
  sourceType?: string;
  /** serialises git reads and state changes of one app */
  queue: Promise<void>;
  reconcileQueued?: Promise<void>;
}

interface Watcher {
  res: Response;
  sse: boolean;
  name?: string;
  appNamespace?: string;
  /** last message written per app name: identical consecutive messages are dropped */
  last: Map<string, string>;
  keepalive?: NodeJS.Timeout;
}

interface ManifestReport {
  outcome: RolloutOutcome;
  key: string;
  images: string[];
  sourceType: string;
  /** hash of the content with image references left out */
  withoutImages: string;
}

const DESTINATION_SERVER = "https://kubernetes.default.svc";
const HISTORY_LIMIT = 10; // spec.revisionHistoryLimit default
const AUTOMATED_RETRY_LIMIT = 5; // appcontroller.go autoSync: RetryStrategy{Limit: 5}
const SHA_PATTERN = /^[0-9a-f]{40}$/i;
/** an ignoreDifferences JSON pointer to a container image */
const IMAGE_POINTER = /^\/spec\/template\/spec\/(?:init)?[cC]ontainers\/\d+\/image$/;
/** what ignoring image differences leaves out: `image:` lines, and Helm values' `repository:` and `tag:` */
const IMAGE_LINE = /^(\s*(?:-\s*)?(?:image|repository|tag):).*$/gm;
/** the lab's Lua health script says this for a health given by the `lab.keptn.sh/health` annotation */
const LIVE_HEALTH_MESSAGE = "lab: health set by the annotation lab.keptn.sh/health";
const ABBREVIATED_SHA_PATTERN = /^[0-9a-f]{7,39}$/i;
/** conservative ref-name check so user input can never be read as a git option or a range */
const REVISION_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._/-]*$/;
/** env vars that would point git at another repository than --git-dir */
const GIT_LOCATION_ENV = new Set([
  "GIT_DIR",
  "GIT_WORK_TREE",
  "GIT_INDEX_FILE",
  "GIT_OBJECT_DIRECTORY",
  "GIT_ALTERNATE_OBJECT_DIRECTORIES",
  "GIT_COMMON_DIR",
  "GIT_NAMESPACE",
  "GIT_PREFIX",
]);

const execFileAsync = promisify(execFile);

/** A git command failed; `cause` holds the execFile error (with stderr). */
class GitCommandError extends Error {
  override readonly name = "GitCommandError";
}

/** grpc status -> HTTP status, as in the grpc-gateway mapping */
const GRPC_CODE_BY_HTTP_STATUS: Record<number, number> = {
  400: 3, // InvalidArgument (FailedPrecondition is also 400; callers pass 9 explicitly)
  401: 16, // Unauthenticated
  403: 7, // PermissionDenied
  404: 5, // NotFound
  409: 10, // Aborted
  429: 8, // ResourceExhausted
  499: 1, // Canceled
  500: 2, // Unknown
  501: 12, // Unimplemented
  503: 14, // Unavailable
  504: 4, // DeadlineExceeded
};

const nullish = <T extends z.ZodType>(schema: T) => schema.nullish().transform((value) => value ?? undefined);

/** applicationApplicationSyncRequest; Go's encoding/json accepts null for every field */
const syncRequestSchema = z.looseObject({
  name: nullish(z.string()),
  appNamespace: nullish(z.string()),
  project: nullish(z.string()),
  revision: nullish(z.string()),
  revisions: nullish(z.array(z.string())),
  sourcePositions: nullish(z.array(z.union([z.string(), z.number()]))),
  prune: nullish(z.boolean()),
  dryRun: nullish(z.boolean()),
  strategy: nullish(z.record(z.string(), z.unknown())),
  resources: nullish(z.array(z.record(z.string(), z.unknown()))),
  syncOptions: nullish(z.looseObject({ items: nullish(z.array(z.string())) })),
  retryStrategy: nullish(
    z.looseObject({
      limit: nullish(z.number().int()),
      backoff: nullish(
        z.looseObject({
          duration: nullish(z.string()),
          factor: nullish(z.number().int()),
          maxDuration: nullish(z.string()),
        }),
      ),
      refresh: nullish(z.boolean()),
    }),
  ),
  infos: nullish(z.array(z.object({ name: z.string(), value: z.string() }))),
  manifests: nullish(z.array(z.string())),
});
type SyncRequest = z.infer<typeof syncRequestSchema>;

/** An answer in the grpc-gateway runtimeError shape. */
class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly httpStatus: number,
    readonly grpcCode: number,
    message: string,
  ) {
    super(message);
  }
}

const permissionDenied = () => new ApiError(403, 7, "permission denied");
const anotherOperationInProgress = () => new ApiError(400, 9, "another operation is already in progress");

export class ArgoCdSimulator extends EventEmitter<{ settled: [SettledEvent] }> {
  /** every HTTP request received, in order, for tests to assert on */
  readonly requests: RecordedRequest[] = [];
  /** internal failures that were not an API answer (also shown as app conditions); tests can assert it stays empty */
  readonly errors: Error[] = [];

  private readonly token: string;
  private readonly pollIntervalMs: number;
  private readonly syncDurationMs: number;
  private readonly healthDelayMs: number;
  private readonly keepaliveIntervalMs: number;
  private readonly host: string;
  private readonly port: number;
  private readonly apps = new Map<string, AppRecord>();
  private readonly watchers = new Set<Watcher>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private server?: Server;
  private baseUrl?: string;
  private state: "new" | "running" | "stopped" = "new";
  private resourceVersionCounter = 722_811_000;
  private pendingFailures: Array<number> = [];

  constructor(options: ArgoCdSimulatorOptions) {
    super();
    if (!looksLikeJwt(options.token)) {
      throw new Error(
        "ArgoCdSimulator: options.token must look like a JWT (three dot-separated parts): argocd-server ignores other bearer tokens",
      );
    }
    this.token = options.token;
    this.pollIntervalMs = positive(options.pollIntervalMs, 250, "pollIntervalMs");
    this.syncDurationMs = positive(options.syncDurationMs, 200, "syncDurationMs", true);
    this.healthDelayMs = positive(options.healthDelayMs, 200, "healthDelayMs", true);
    this.keepaliveIntervalMs = positive(options.keepaliveIntervalMs, 15_000, "keepaliveIntervalMs");
    this.host = options.host ?? "127.0.0.1";
    this.port = options.port ?? 0;
    for (const app of options.apps) this.addApp(app);
  }

  get url(): string {
    if (this.baseUrl === undefined) throw new Error("ArgoCdSimulator: call start() before reading url");
    return this.baseUrl;
  }

  /** Listens, compares every app with git once, starts the poll loop; returns the base URL. */
  async start(): Promise<string> {
    if (this.state !== "new") throw new Error(`ArgoCdSimulator: start() called on a ${this.state} simulator`);
    this.state = "running";
    const server = this.buildHttpApp().listen(this.port, this.host);
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("listening", resolve);
      server.once("error", reject);
    });
    const address = server.address() as AddressInfo;
    this.baseUrl = `http://${formatHost(address.address)}:${address.port}`;
    await Promise.all([...this.apps.values()].map((record) => this.requestReconcile(record)));
    this.schedulePoll();
    return this.baseUrl;
  }

  /** Closes open streams, the server and every timer; waits for running git commands. */
  async stop(): Promise<void> {
    if (this.isStopped()) return;
    const wasRunning = this.state === "running";
    this.state = "stopped";
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const watcher of this.watchers) this.dropWatcher(watcher, true);
    const server = this.server;
    if (wasRunning && server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    await Promise.all([...this.apps.values()].map((record) => record.queue));
  }

  addApp(app: SimulatedApp): void {
    if (this.isStopped()) throw new Error("ArgoCdSimulator: addApp() after stop()");
    if (this.apps.has(app.name)) throw new Error(`ArgoCdSimulator: app "${app.name}" already exists`);
    if (app.name.length === 0) throw new Error("ArgoCdSimulator: app name must not be empty");
    const config: AppConfig = {
      name: app.name,
      namespace: app.namespace ?? "argocd",
      project: app.project ?? "default",
      repoURL: app.repoURL,
      gitDir: app.gitDir,
      targetRevision: app.targetRevision ?? "main",
      path: app.path,
      ...(app.valueFiles ? { valueFiles: [...app.valueFiles] } : {}),
      automated: app.automated ?? true,
      ...(app.retry ? { retry: structuredClone(app.retry) } : {}),
      ...(app.ignoreDifferences ? { ignoreDifferences: structuredClone(app.ignoreDifferences) } : {}),
      ignoresImages: (app.ignoreDifferences ?? []).some(
        (entry) =>
          entry.kind === "Deployment" && (entry.jsonPointers ?? []).some((p) => IMAGE_POINTER.test(p)),
      ),
    };
    const record: AppRecord = {
      config,
      uid: randomUUID(),
      creationTimestamp: rfc3339(),
      resourceVersion: ++this.resourceVersionCounter,
      generation: 1,
      json: "",
      operationSeq: 0,
      conditions: [],
      health: {},
      rolloutSeq: 0,
      syncsDenied: false,
      history: [],
      queue: Promise.resolve(),
    };
    record.json = JSON.stringify(this.render(record));
    this.apps.set(config.name, record);
    if (this.state === "running") {
      this.broadcast(record, "ADDED");
      void this.requestReconcile(record);
    }
  }

  /** The next `count` API requests answer `status` (default 503) with an Argo-style error body. */
  injectFailures(count: number, status = 503): void {
    for (let i = 0; i < count; i++) this.pendingFailures.push(status);
  }

  /**
   * Stand-in for a deny sync window (manualSync off) on the app's project: while `denied`, auto-sync does not
   * start and POST /sync answers 403 "cannot sync: blocked by sync window". Lifting it changes nothing until
   * the next comparison (a poll or a `?refresh=`), as in the real controller.
   */
  denySyncs(app: string, denied: boolean): void {
    this.recordOf(app).syncsDenied = denied;
  }

  /**
   * Stand-in for patching the live Deployment with the lab's `lab.keptn.sh/health` annotation: the app's health
   * becomes `health` (undefined: its rollout's own again), also across later syncs, as the annotation stays on
   * the live object. Resolves once the new version is published.
   */
  setLiveHealth(app: string, health: LiveHealth | undefined): Promise<void> {
    const record = this.recordOf(app);
    if (record.live === undefined)
      throw new Error(`ArgoCdSimulator: app "${app}" has no live Deployment yet`);
    return this.background(record, async () => {
      record.liveHealth = health;
      this.showHealth(record);
      this.publish(record);
    });
  }

  private recordOf(app: string): AppRecord {
    const record = this.apps.get(app);
    if (record === undefined) throw new Error(`ArgoCdSimulator: no app "${app}"`);
    return record;
  }

  /** What the live Deployment reports: a health given from outside wins over the rollout's. */
  private showHealth(record: AppRecord): void {
    if (record.live === undefined) return;
    if (record.liveHealth !== undefined) setHealth(record, record.liveHealth, LIVE_HEALTH_MESSAGE);
    else if (record.rolloutHealth)
      setHealth(record, record.rolloutHealth.status, record.rolloutHealth.message);
  }

  // ------------------------------------------------------------------------------------------------
  // Controller: reconcile (compare with git), auto-sync, operations, health
  // ------------------------------------------------------------------------------------------------

  private schedulePoll(): void {
    this.later(this.pollIntervalMs, () => {
      for (const record of this.apps.values()) void this.requestReconcile(record);
      this.schedulePoll();
    });
  }

  /** Queues one comparison with git; joins one that is queued but has not started yet. */
  private requestReconcile(record: AppRecord): Promise<void> {
    if (record.reconcileQueued) return record.reconcileQueued;
    const queued = this.background(record, async () => {
      record.reconcileQueued = undefined;
      await this.reconcile(record);
    });
    record.reconcileQueued = queued;
    return queued;
  }

  private async reconcile(record: AppRecord): Promise<void> {
    if (this.isStopped()) return;
    const { gitDir, targetRevision, path, valueFiles } = record.config;
    let head: string | undefined;
    let headTree: string | undefined;
    let headKey: string | undefined;
    let sourceType: string | undefined;
    let comparisonError: string | undefined;
    let headWithoutImages: string | undefined;
    try {
      head = await resolveCommit(gitDir, targetRevision);
      if (head === undefined) {
        comparisonError = targetStateError(`Unable to resolve '${targetRevision}' to a commit SHA`);
      } else {
        headTree = await treeAt(gitDir, head, path);
        if (headTree === undefined) comparisonError = targetStateError(`${path}: app path does not exist`);
        else if (headTree !== record.headTree) sourceType = await detectSourceType(gitDir, headTree);
        if (headTree !== undefined) {
          headKey =
            headTree === record.headTree && record.headKey !== undefined
              ? record.headKey
              : renderedKey(await renderedFiles(gitDir, headTree, valueFiles));
        }
        if (headKey !== undefined && record.config.ignoresImages && record.live?.key !== headKey) {
          headWithoutImages = (await readManifests(gitDir, head, path, valueFiles))?.withoutImages;
        }
      }
    } catch (error) {
      comparisonError = targetStateError(describeError(error));
    }
    if (this.isStopped()) return;

    const compared = comparisonError === undefined && headTree !== undefined;
    const inSync =
      headKey === record.live?.key ||
      (headWithoutImages !== undefined && headWithoutImages === record.live?.withoutImages);
    const syncStatus: SyncStatusCode = !compared ? "Unknown" : inSync ? "Synced" : "OutOfSync";
    const autoSync = this.autoSync(record, syncStatus, head);
    if (autoSync.revision !== undefined) {
      this.requestOperation(record, {
        sync: { revision: autoSync.revision, prune: true },
        initiatedBy: { automated: true },
        // appcontroller.go autoSync: Retry{Limit: 5} unless the app has a retry policy of its own
        retry: structuredClone(record.config.retry ?? { limit: AUTOMATED_RETRY_LIMIT }),
      });
      // autoSync writes the operation (argo.SetAppOperation) before the comparison's status is persisted: one
      // version shows the new operation next to the old status (and the refresh annotations, if any).
      this.publish(record);
    }

    record.reconciledAt = rfc3339();
    record.refreshRequested = undefined;
    record.syncRevision = head;
    record.headTree = headTree;
    record.headKey = headKey;
    if (sourceType !== undefined) record.sourceType = sourceType;
    record.syncStatus = syncStatus;
    setCondition(record, "ComparisonError", compared ? undefined : (comparisonError ?? "comparison failed"));
    if (record.live === undefined && record.health.status !== "Missing") setHealth(record, "Missing");
    setCondition(record, "SyncError", autoSync.syncError);
    this.publish(record);
  }

  /** controller/appcontroller.go autoSync: when to start an automated sync, or why not. */
  private autoSync(
    record: AppRecord,
    syncStatus: SyncStatusCode,
    desired: string | undefined,
  ): { revision?: string; syncError?: string } {
    if (!record.config.automated || record.operation !== undefined || record.syncsDenied) return {};
    if (syncStatus !== "OutOfSync" || desired === undefined) return {};
    const last = record.operationState;
    if (last?.syncResult?.revision === desired && isCompleted(last.phase)) {
      // alreadyAttemptedSync: a failed revision is not retried; a succeeded one is left alone (no self-heal here)
      if (last.phase !== "Succeeded") {
        return { syncError: `Failed last sync attempt to [${desired}]: ${last.message ?? ""}` };
      }
      return {};
    }
    return { revision: desired };
  }

  /** Sets the top-level `operation` (what argocd-server's Sync and the controller's autoSync do). */
  private requestOperation(record: AppRecord, operation: OperationJson): void {
    record.operation = operation;
    const seq = ++record.operationSeq;
    // the controller picks the operation up in its own work queue, a moment after it was requested
    this.later(0, () => this.startOperation(record, seq));
  }

  private startOperation(record: AppRecord, seq: number): void {
    const operation = record.operation;
    if (seq !== record.operationSeq || operation === undefined) return;
    // The real controller writes the new operation state before the sync has run: no syncResult yet.
    record.operationState = {
      operation: structuredClone(operation),
      phase: "Running",
      message: "one or more tasks are running",
      startedAt: rfc3339(),
    };
    this.publish(record);
    this.runAttempt(record, seq);
  }

  private runAttempt(record: AppRecord, seq: number): void {
    this.later(this.syncDurationMs, () => {
      void this.background(record, () => this.finishOperation(record, seq));
    });
  }

  /**
   * A failed attempt with retries left (appcontroller.go processRequestedAppOperation): the phase stays Running,
   * finishedAt is set and the message names the next attempt; when its time comes the controller clears
   * finishedAt and says "Retrying operation. Attempt #N" before it syncs again.
   */
  private scheduleRetry(record: AppRecord, seq: number, failed: OperationStateJson): boolean {
    const retry = failed.operation.retry;
    const count = failed.retryCount ?? 0;
    const limit = retry.limit ?? 0;
    if (!(count < limit || limit < 0)) {
      if (count > 0) failed.message = `${failed.message ?? ""} (retried ${count} times).`;
      return false;
    }
    const delayMs = retryDelayMs(retry, count);
    const retryAt = new Date(Date.now() + delayMs);
    record.operationState = {
      ...failed,
      phase: "Running",
      retryCount: count + 1,
      message: `${failed.message ?? ""}. Retrying attempt #${count + 1} at ${kitchen(retryAt)}.`,
    };
    this.publish(record);
    this.later(delayMs, () => {
      const state = record.operationState;
      if (seq !== record.operationSeq || state?.phase !== "Running") return;
      // setOperationState sends a merge patch: finishedAt is nulled explicitly, but the cleared sync result is
      // just left out, so the failed attempt's result stays visible while the retry runs.
      const retrying: OperationStateJson = { ...state, message: `Retrying operation. Attempt #${count + 1}` };
      delete retrying.finishedAt;
      record.operationState = retrying;
      this.publish(record);
      this.runAttempt(record, seq);
    });
    return true;
  }

  private async finishOperation(record: AppRecord, seq: number): Promise<void> {
    const state = record.operationState;
    if (this.isStopped() || seq !== record.operationSeq || state?.phase !== "Running") return;
    const revision = state.operation.sync.revision;
    const dryRun = state.operation.sync.dryRun === true;
    let report: ManifestReport | undefined;
    let failure: string | undefined;
    try {
      report = await readManifests(
        record.config.gitDir,
        revision,
        record.config.path,
        record.config.valueFiles,
      );
      if (report === undefined) {
        failure = `ComparisonError: ${targetStateError(`${record.config.path}: app path does not exist`)}`;
      }
    } catch (error) {
      failure = `ComparisonError: ${targetStateError(describeError(error))}`;
    }
    if (this.isStopped() || seq !== record.operationSeq) return;

    const finishedAt = rfc3339();
    const { name } = record.config;
    const resource = (status: string, message: string, hookPhase: string): ResourceResultJson => ({
      group: "apps",
      version: "v1",
      kind: "Deployment",
      namespace: name,
      name,
      status,
      message,
      hookPhase,
      syncPhase: "Sync",
      ...(report && report.images.length > 0 ? { images: report.images } : {}),
    });

    if (report?.outcome === "sync-fail" || failure !== undefined) {
      const reason =
        `Deployment.apps "${name}" is invalid: spec.template.spec.containers[0].image: ` +
        `Invalid value: "${report?.images[0] ?? ""}": rejected by the simulated API server (manifest contains "syncfail")`;
      const failed: OperationStateJson = {
        ...state,
        phase: "Failed",
        message: failure ?? `one or more objects failed to apply, reason: ${reason}`,
        syncResult: {
          resources: failure === undefined ? [resource("SyncFailed", reason, "Failed")] : undefined,
          revision,
          source: this.source(record),
        },
        finishedAt,
      };
      if (this.scheduleRetry(record, seq, failed)) return;
      record.operationState = failed;
      record.operation = undefined;
      this.publish(record);
      this.settle(record, revision, "Failed");
    } else if (report?.outcome === "hook-fail" && !dryRun) {
      // The Sync phase applied the Deployment and waited for it to be healthy; then the API server refused the
      // PostSync hook (lab: a ConfigMap refused by a ValidatingAdmissionPolicy). The live objects are the new
      // ones, so the next comparison says Synced, but no history entry is written.
      const hook = `${name}-postsync-check`;
      const reason =
        `configmaps "${hook}" is forbidden: rejected by the simulated API server ` +
        `(a PostSync hook of a manifest that contains "hookfail")`;
      const verb = record.live === undefined ? "created" : "configured";
      this.goLive(record, revision, report);
      record.rolloutHealth = { status: "Healthy" };
      ++record.rolloutSeq;
      this.showHealth(record);
      const failed: OperationStateJson = {
        ...state,
        phase: "Failed",
        message: `one or more objects failed to apply, reason: ${reason}`,
        syncResult: {
          resources: [
            resource("Synced", `deployment.apps/${name} ${verb}`, "Succeeded"),
            {
              group: "",
              version: "v1",
              kind: "ConfigMap",
              namespace: name,
              name: hook,
              status: "SyncFailed",
              message: reason,
              hookType: "PostSync",
              hookPhase: "Failed",
              syncPhase: "PostSync",
            },
          ],
          revision,
          source: this.source(record),
        },
        finishedAt,
      };
      if (!this.scheduleRetry(record, seq, failed)) {
        record.operationState = failed;
        record.operation = undefined;
        this.publish(record);
        this.settle(record, revision, "Failed");
      }
    } else if (report !== undefined) {
      const verb = record.live === undefined ? "created" : "configured";
      record.operationState = {
        ...state,
        phase: "Succeeded",
        message: "successfully synced (all tasks run)",
        syncResult: {
          resources: [
            resource("Synced", `deployment.apps/${name} ${verb}${dryRun ? " (dry run)" : ""}`, "Running"),
          ],
          revision,
          source: this.source(record),
        },
        finishedAt,
      };
      record.operation = undefined;
      if (dryRun) {
        this.publish(record);
        this.settle(record, revision, "Succeeded");
      } else {
        this.applyRollout(record, revision, report, state.startedAt, finishedAt);
      }
    }
    // the controller refreshes the app after an operation completes
    void this.requestReconcile(record);
  }

  /** A successful, non-dry-run sync: the simulated cluster now runs `revision`. */
  private applyRollout(
    record: AppRecord,
    revision: string,
    report: ManifestReport,
    startedAt: string,
    finishedAt: string,
  ): void {
    const lastId = record.history.at(-1)?.id;
    record.history.push({
      revision,
      deployedAt: finishedAt,
      id: lastId === undefined ? 0 : lastId + 1,
      source: this.source(record),
      deployStartedAt: startedAt,
      initiatedBy: structuredClone(record.operationState?.operation.initiatedBy ?? {}),
    });
    if (record.history.length > HISTORY_LIMIT)
      record.history.splice(0, record.history.length - HISTORY_LIMIT);
    this.goLive(record, revision, report);
    // sync.status is left as it was: the real controller writes the finished operation first and compares
    // again afterwards (the reconcile that finishOperation requests), so one version says Succeeded + OutOfSync.
    record.rolloutHealth = {
      status: "Progressing",
      message: "Waiting for rollout to finish: 0 of 1 updated replicas are available...",
    };
    this.showHealth(record);
    this.publish(record);

    const rollout = ++record.rolloutSeq;
    if (report.outcome === "hang") return; // stays Progressing; never settles
    this.later(this.healthDelayMs, () => {
      if (rollout !== record.rolloutSeq) return; // a newer rollout replaced this one
      record.rolloutHealth =
        report.outcome === "crashloop"
          ? {
              status: "Degraded",
              message: `Deployment "${record.config.name}" exceeded its progress deadline`,
            }
          : { status: "Healthy" };
      this.showHealth(record);
      this.publish(record);
      this.settle(record, revision, "Succeeded");
    });
  }

  /** The simulated cluster now runs the objects of `revision`. */
  private goLive(record: AppRecord, revision: string, report: ManifestReport): void {
    record.live = { revision, key: report.key, images: report.images, withoutImages: report.withoutImages };
    record.sourceType = report.sourceType;
  }

  private settle(record: AppRecord, revision: string, phase: SettledPhase): void {
    const event: SettledEvent = {
      app: record.config.name,
      revision,
      phase,
      health: record.health.status ?? "Unknown",
      at: performance.now(),
    };
    this.emit("settled", event);
  }

  /** Runs `task` after every earlier task of this app; the caller gets its result or error. */
  private enqueue<T>(record: AppRecord, task: () => Promise<T>): Promise<T> {
    const run = record.queue.then(task);
    record.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** Like enqueue, for work nobody waits on: a failure is recorded on the app, never thrown. */
  private background(record: AppRecord, task: () => Promise<void>): Promise<void> {
    return this.enqueue(record, task).catch((error: unknown) => this.internalError(error, record));
  }

  private internalError(error: unknown, record?: AppRecord): void {
    if (this.isStopped()) return;
    this.errors.push(error instanceof Error ? error : new Error(String(error)));
    if (record === undefined) return;
    setCondition(record, "ComparisonError", `simulator error: ${describeError(error)}`);
    this.publish(record);
  }

  private isStopped(): boolean {
    return this.state === "stopped";
  }

  private later(ms: number, callback: () => void): void {
    if (this.isStopped()) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.isStopped()) return;
      try {
        callback();
      } catch (error) {
        this.internalError(error);
      }
    }, ms);
    this.timers.add(timer);
  }

  // ------------------------------------------------------------------------------------------------
  // Rendering and change notification
  // ------------------------------------------------------------------------------------------------

  private source(record: AppRecord): ApplicationSourceJson {
    const { repoURL, path, targetRevision, valueFiles } = record.config;
    return {
      repoURL,
      path,
      targetRevision,
      ...(valueFiles ? { helm: { valueFiles: [...valueFiles] } } : {}),
    };
  }

  private destination(record: AppRecord): DestinationJson {
    return { server: DESTINATION_SERVER, namespace: record.config.name };
  }

  /** encoding/json of v1alpha1.Application: omitempty fields left out (undefined is dropped by JSON.stringify). */
  private render(record: AppRecord): ApplicationJson {
    const { config } = record;
    const reconciled = record.reconciledAt !== undefined;
    return {
      metadata: {
        name: config.name,
        namespace: config.namespace,
        uid: record.uid,
        resourceVersion: String(record.resourceVersion),
        generation: record.generation,
        creationTimestamp: record.creationTimestamp,
        // argo.RefreshApp sets both; the controller removes them with the status of its comparison
        annotations: record.refreshRequested
          ? { "argocd.argoproj.io/hydrate": "normal", "argocd.argoproj.io/refresh": record.refreshRequested }
          : undefined,
      },
      spec: {
        source: this.source(record),
        destination: this.destination(record),
        project: config.project,
        syncPolicy:
          config.automated || config.retry
            ? {
                ...(config.automated ? { automated: { prune: true, selfHeal: true } } : {}),
                ...(config.retry ? { retry: config.retry } : {}),
              }
            : undefined,
        ignoreDifferences: config.ignoreDifferences,
      },
      status: {
        resources:
          reconciled && (record.headTree !== undefined || record.live !== undefined)
            ? [
                {
                  group: "apps",
                  version: "v1",
                  kind: "Deployment",
                  namespace: config.name,
                  name: config.name,
                  status: record.syncStatus,
                  health: { status: record.health.status, message: record.health.message },
                },
              ]
            : undefined,
        sync: {
          // SyncStatus.status has no omitempty: an app that was never compared reports ""
          status: record.syncStatus ?? "",
          comparedTo: { source: this.source(record), destination: this.destination(record) },
          revision: record.syncRevision,
        },
        health: { ...record.health },
        history: record.history.length > 0 ? record.history : undefined,
        conditions: record.conditions.length > 0 ? record.conditions : undefined,
        reconciledAt: record.reconciledAt,
        operationState: record.operationState,
        sourceType: record.sourceType,
        summary: record.live && record.live.images.length > 0 ? { images: record.live.images } : {},
        controllerNamespace: "argocd",
      },
      operation: record.operation,
    };
  }

  /**
   * Stores the app's new JSON; if anything changed, bumps resourceVersion and tells the watchers. A change of
   * metadata only (`metadataOnly`) leaves `generation` alone, as the API server does.
   */
  private publish(record: AppRecord, { metadataOnly = false } = {}): void {
    if (JSON.stringify(this.render(record)) === record.json) return;
    record.resourceVersion = ++this.resourceVersionCounter;
    // the Application CRD has no status subresource: every change outside metadata bumps it
    if (!metadataOnly) record.generation += 1;
    record.json = JSON.stringify(this.render(record));
    this.broadcast(record, "MODIFIED");
  }

  private broadcast(record: AppRecord, type: WatchEventType): void {
    for (const watcher of this.watchers) {
      if (watcherMatches(watcher, record)) this.send(watcher, record, type);
    }
  }

  private send(watcher: Watcher, record: AppRecord, type: WatchEventType): void {
    const message = `{"result":{"type":"${type}","application":${record.json}}}`;
    if (watcher.last.get(record.config.name) === message) return; // forwarder_overwrite.go dedupe
    watcher.last.set(record.config.name, message);
    // argoproj/pkg grpc/http/forwarders.go: 'data: %s \n\n', then the grpc-gateway delimiter '\n'
    watcher.res.write(watcher.sse ? `data: ${message} \n\n\n` : `${message}\n`);
  }

  private dropWatcher(watcher: Watcher, end: boolean): void {
    if (watcher.keepalive) clearInterval(watcher.keepalive);
    this.watchers.delete(watcher);
    if (end && !watcher.res.writableEnded) watcher.res.end();
  }

  // ------------------------------------------------------------------------------------------------
  // HTTP API (argocd-server)
  // ------------------------------------------------------------------------------------------------

  private buildHttpApp(): express.Express {
    const app = express();
    app.disable("x-powered-by");
    app.use((req, res, next) => {
      const url = new URL(req.originalUrl, "http://simulator.invalid");
      const query: Record<string, string> = {};
      for (const [key, value] of url.searchParams) query[key] ??= value;
      const recorded: RecordedRequest = { method: req.method, path: url.pathname, query };
      this.requests.push(recorded);
      res.locals["recorded"] = recorded;
      next();
    });
    app.use(express.json({ type: () => true, limit: "5mb" }));
    app.use((req, res, next) => {
      const recorded = res.locals["recorded"] as RecordedRequest;
      if (req.body !== undefined) recorded.body = req.body;
      next();
    });
    app.use("/api", (req, res, next) => {
      const status = this.pendingFailures.shift();
      if (status !== undefined) {
        const message = `simulated failure injected by ArgoCdSimulator (HTTP ${status})`;
        sendError(res, new ApiError(status, GRPC_CODE_BY_HTTP_STATUS[status] ?? 2, message));
        return;
      }
      const presented = bearerToken(req);
      if (presented === undefined) throw new ApiError(401, 16, "no session information");
      if (presented !== this.token)
        throw new ApiError(401, 16, "invalid session: token signature is invalid");
      next();
    });

    // server/application/application.go List: an ApplicationList of every application, sorted by name.
    app.get("/api/v1/applications", (_req, res) => {
      const records = [...this.apps.values()].sort((a, b) => a.config.name.localeCompare(b.config.name));
      const version = Math.max(0, ...records.map((r) => r.resourceVersion));
      sendJson(
        res,
        `{"metadata":{"resourceVersion":"${version}"},"items":[${records.map((r) => r.json).join(",")}]}`,
      );
    });

    app.get("/api/v1/applications/:name", async (req, res) => {
      const record = this.findApp(req.params.name, requestQuery(req));
      const refresh = requestQuery(req).get("refresh");
      // server/application/application.go Get: with `refresh` it sets the refresh annotations (argo.RefreshApp:
      // a version of their own, the status still the old one) and blocks until the controller has compared
      if (refresh !== null) {
        await this.enqueue(record, async () => {
          record.refreshRequested = refresh === "hard" ? "hard" : "normal";
          this.publish(record, { metadataOnly: true });
        });
        await this.requestReconcile(record);
      }
      sendJson(res, record.json);
    });

    app.post("/api/v1/applications/:name/sync", async (req, res) => {
      const parsed = syncRequestSchema.safeParse(req.body ?? {});
      if (!parsed.success)
        throw new ApiError(400, 3, `invalid sync request: ${z.prettifyError(parsed.error)}`);
      const record = this.findApp(req.params.name, requestQuery(req), parsed.data);
      await this.sync(record, parsed.data);
      sendJson(res, record.json);
    });

    app.get("/api/v1/stream/applications", (req, res) => {
      const query = requestQuery(req);
      const sse = (req.get("accept") ?? "").includes("text/event-stream");
      res.status(200);
      res.setHeader("Content-Type", sse ? "text/event-stream" : "application/json");
      res.flushHeaders();
      const watcher: Watcher = {
        res,
        sse,
        name: query.get("name") ?? undefined,
        appNamespace: query.get("appNamespace") ?? undefined,
        last: new Map(),
      };
      this.watchers.add(watcher);
      res.on("close", () => this.dropWatcher(watcher, false));
      // "Mimic watch API behavior": ADDED for every matching app first
      for (const record of this.apps.values()) {
        if (watcherMatches(watcher, record)) this.send(watcher, record, "ADDED");
      }
      if (sse) {
        watcher.keepalive = setInterval(() => res.write(":\n"), this.keepaliveIntervalMs);
      }
    });

    app.use((_req, _res) => {
      throw new ApiError(404, 5, "Not Found");
    });
    app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
      if (error instanceof ApiError) {
        sendError(res, error);
      } else if (isBodyParserError(error)) {
        sendError(res, new ApiError(400, 3, error.message));
      } else {
        sendError(res, new ApiError(500, 2, describeError(error)));
      }
    });
    return app;
  }

  /** getApplicationEnforceRBACClient: a missing app is 403 unless a project was named, then 404. */
  private findApp(name: string, query: URLSearchParams, body?: SyncRequest): AppRecord {
    const record = this.apps.get(name);
    const projects = [...query.getAll("project"), ...query.getAll("projects")];
    if (body?.project) projects.push(body.project);
    const appNamespace = query.get("appNamespace") ?? body?.appNamespace;
    const found =
      record !== undefined &&
      (appNamespace === undefined || appNamespace === "" || appNamespace === record.config.namespace) &&
      (projects.length === 0 || projects.includes(record.config.project));
    if (found) return record;
    if (projects.length > 0) throw new ApiError(404, 5, `applications.argoproj.io "${name}" not found`);
    throw permissionDenied();
  }

  /** server/application/application.go Sync */
  private async sync(record: AppRecord, request: SyncRequest): Promise<void> {
    const { targetRevision } = record.config;
    const requested = request.revision ?? "";
    if (request.manifests !== undefined) {
      throw new ApiError(
        501,
        12,
        "local manifests (sync --local) are not supported by the Argo CD simulator",
      );
    }
    if (record.config.automated && request.dryRun !== true) {
      if (requested !== "" && requested !== (targetRevision || "HEAD")) {
        throw new ApiError(
          400,
          9,
          `Cannot sync to ${requested}: auto-sync currently set to ${targetRevision}`,
        );
      }
    }
    if (record.syncsDenied) throw new ApiError(403, 7, "cannot sync: blocked by sync window");
    await this.enqueue(record, async () => {
      const ambiguous = requested === "" ? targetRevision : requested;
      const revision = await resolveCommit(record.config.gitDir, ambiguous).catch(() => undefined);
      if (revision === undefined) {
        const reason = `Unable to resolve '${ambiguous}' to a commit SHA`;
        throw new ApiError(
          400,
          9,
          `error resolving repo revision: rpc error: code = Unknown desc = ${reason}`,
        );
      }
      if (record.operation !== undefined) throw anotherOperationInProgress();
      const syncOptions = request.syncOptions?.items;
      this.requestOperation(record, {
        sync: {
          revision,
          prune: request.prune || undefined,
          dryRun: request.dryRun || undefined,
          syncStrategy: request.strategy,
          resources: request.resources && request.resources.length > 0 ? request.resources : undefined,
          syncOptions: syncOptions && syncOptions.length > 0 ? syncOptions : undefined,
        },
        initiatedBy: { username: "admin" },
        info: request.infos && request.infos.length > 0 ? request.infos : undefined,
        // the app's own retry policy unless the request brings one (argocd-server Sync)
        retry: request.retryStrategy ?? structuredClone(record.config.retry ?? {}),
      });
      this.publish(record);
    });
  }
}

// ---- git (real CLI, never mocked) ----

async function git(gitDir: string, args: string[]): Promise<string> {
  const env: NodeJS.ProcessEnv = { GIT_TERMINAL_PROMPT: "0" };
  for (const [key, value] of Object.entries(process.env)) {
    if (!GIT_LOCATION_ENV.has(key)) env[key] ??= value;
  }
  try {
    const { stdout } = await execFileAsync("git", ["--git-dir", gitDir, ...args], {
      encoding: "utf8",
      env,
      timeout: 15_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    throw new GitCommandError(`git ${args.join(" ")} failed for ${gitDir}`, { cause: error });
  }
}

/** `git rev-parse --verify` that answers undefined (instead of failing) when the object does not exist. */
async function revParse(gitDir: string, spec: string): Promise<string | undefined> {
  try {
    return (await git(gitDir, ["rev-parse", "--verify", "--quiet", spec])).trim();
  } catch (error) {
    if (error instanceof GitCommandError && exitCode(error.cause) === 1) return undefined;
    throw error;
  }
}

/** A (possibly abbreviated) SHA, a branch, a tag or HEAD -> full commit SHA; undefined when it does not resolve. */
async function resolveCommit(gitDir: string, revision: string): Promise<string | undefined> {
  if (SHA_PATTERN.test(revision)) return revParse(gitDir, `${revision.toLowerCase()}^{commit}`);
  if (!REVISION_PATTERN.test(revision) || revision.includes("..")) return undefined;
  const candidates = revision === "HEAD" ? ["HEAD"] : [`refs/heads/${revision}`, `refs/tags/${revision}`];
  if (ABBREVIATED_SHA_PATTERN.test(revision)) candidates.push(revision.toLowerCase());
  for (const ref of candidates) {
    const sha = await revParse(gitDir, `${ref}^{commit}`);
    if (sha !== undefined) return sha;
  }
  return undefined;
}

function normalizePath(path: string): string {
  return path
    .replace(/^(\.\/|\/)+/, "")
    .replace(/\/+$/, "")
    .replace(/^\.$/, "");
}

/** Tree SHA of `path` at `commit`; undefined when the path does not exist there. */
async function treeAt(gitDir: string, commit: string, path: string): Promise<string | undefined> {
  const normalized = normalizePath(path);
  if (normalized === "") return revParse(gitDir, `${commit}^{tree}`);
  // after "<rev>:" git reads everything as the path, so the type is checked separately
  const sha = await revParse(gitDir, `${commit}:${normalized}`);
  if (sha === undefined) return undefined;
  const type = (await git(gitDir, ["cat-file", "-t", sha])).trim();
  return type === "tree" ? sha : undefined;
}

interface TreeEntry {
  type: string;
  sha: string;
  name: string;
}

async function listTree(gitDir: string, tree: string, recursive: boolean): Promise<TreeEntry[]> {
  const out = await git(gitDir, ["ls-tree", ...(recursive ? ["-r"] : []), "-z", tree]);
  const entries: TreeEntry[] = [];
  for (const line of out.split("\0")) {
    const match = /^\d+ (\w+) ([0-9a-f]+)\t(.*)$/s.exec(line);
    if (match?.[1] && match[2] && match[3] !== undefined) {
      entries.push({ type: match[1], sha: match[2], name: match[3] });
    }
  }
  return entries;
}

/** repo-server GetAppSourceType, roughly: Kustomize, Helm or plain Directory. */
async function detectSourceType(gitDir: string, tree: string): Promise<string> {
  return sourceTypeOf(await listTree(gitDir, tree, false));
}

function sourceTypeOf(entries: TreeEntry[]): string {
  const names = new Set(entries.map((entry) => entry.name));
  if (["kustomization.yaml", "kustomization.yml", "Kustomization"].some((n) => names.has(n)))
    return "Kustomize";
  if (names.has("Chart.yaml")) return "Helm";
  return "Directory";
}

/**
 * The files under a tree that the app renders: all of them, except, for a Helm app with value files, the
 * `values*.yaml` files at its top that it does not name (`values.yaml` always counts).
 */
async function renderedFiles(
  gitDir: string,
  tree: string,
  valueFiles: string[] | undefined,
): Promise<TreeEntry[]> {
  const named = new Set((valueFiles ?? []).map(normalizePath));
  return (await listTree(gitDir, tree, true)).filter(
    (entry) =>
      entry.type === "blob" &&
      (valueFiles === undefined ||
        entry.name === "values.yaml" ||
        !/^values[^/]*\.ya?ml$/.test(entry.name) ||
        named.has(entry.name)),
  );
}

/** What the comparison looks at: the rendered files, by name and content. */
function renderedKey(entries: TreeEntry[]): string {
  const hash = createHash("sha256");
  for (const entry of entries) hash.update(`${entry.name}\0${entry.sha}\n`);
  return hash.digest("hex");
}

/** Reads the files the app renders at `commit` and decides what the simulated cluster does with them. */
async function readManifests(
  gitDir: string,
  commit: string,
  path: string,
  valueFiles?: string[],
): Promise<ManifestReport | undefined> {
  const tree = await treeAt(gitDir, commit, path);
  if (tree === undefined) return undefined;
  const entries = await renderedFiles(gitDir, tree, valueFiles);
  const contents: string[] = [];
  for (const entry of entries) contents.push(await git(gitDir, ["cat-file", "blob", entry.sha]));
  const all = contents.join("\n");
  const images = new Set<string>();
  for (const match of all.matchAll(/^\s*(?:-\s*)?image:\s*["']?([^\s"'#]+)/gm)) {
    if (match[1]) images.add(match[1]);
  }
  return {
    outcome: rolloutOutcome(all),
    key: renderedKey(entries),
    images: [...images],
    sourceType: await detectSourceType(gitDir, tree),
    withoutImages: createHash("sha256").update(all.replace(IMAGE_LINE, "$1 <ignored>")).digest("hex"),
  };
}

/** The markers a test commits to choose the cluster's reaction. */
function rolloutOutcome(content: string): RolloutOutcome {
  if (content.includes("syncfail")) return "sync-fail";
  if (content.includes("hookfail")) return "hook-fail";
  if (content.includes("crashloop")) return "crashloop";
  // "hang" as a word of its own, so "change" or "kubernetes.io/change-cause" do not hang a rollout
  if (/(?<![A-Za-z0-9])hang(?![A-Za-z0-9])/.test(content)) return "hang";
  return "healthy";
}

// ---- small helpers ----

function rfc3339(date = new Date()): string {
  return date.toISOString().replace(/\.\d+Z$/, "Z");
}

function targetStateError(reason: string): string {
  return `Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: code = Unknown desc = ${reason}`;
}

/** RetryStrategy.NextRetryAt: duration * factor^count, at most maxDuration (defaults 5s, 2, 3m). */
function retryDelayMs(retry: RetryStrategyJson, count: number): number {
  const base = goDurationMs(retry.backoff?.duration) ?? 5_000;
  const factor = retry.backoff?.factor ?? 2;
  const max = goDurationMs(retry.backoff?.maxDuration) ?? 180_000;
  return Math.min(base * factor ** count, max);
}

/** The Go durations a retry backoff uses ("500ms", "5s", "3m", "1h", "1m30s"); undefined when absent. */
function goDurationMs(text: string | undefined): number | undefined {
  if (!text) return undefined;
  const units: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(amount) * (units[unit!] ?? 0);
  }
  return total;
}

/** Go's time.Kitchen ("3:04PM"), in UTC as the controller's clock runs here. */
function kitchen(date: Date): string {
  const hours = date.getUTCHours();
  const minutes = String(date.getUTCMinutes()).padStart(2, "0");
  return `${hours % 12 === 0 ? 12 : hours % 12}:${minutes}${hours < 12 ? "AM" : "PM"}`;
}

function isCompleted(phase: OperationPhase): boolean {
  return phase === "Succeeded" || phase === "Failed" || phase === "Error";
}

function setHealth(record: AppRecord, status: HealthStatusCode, message?: string): void {
  const changed = record.health.status !== status;
  record.health = {
    status,
    message,
    lastTransitionTime: changed ? rfc3339() : (record.health.lastTransitionTime ?? rfc3339()),
  };
}

/** Sets (message) or clears (undefined) the condition of `type`; keeps lastTransitionTime if unchanged. */
function setCondition(record: AppRecord, type: ConditionJson["type"], message: string | undefined): void {
  const existing = record.conditions.find((condition) => condition.type === type);
  if (message === undefined) {
    record.conditions = record.conditions.filter((condition) => condition.type !== type);
  } else if (existing === undefined) {
    record.conditions.push({ type, message, lastTransitionTime: rfc3339() });
  } else if (existing.message !== message) {
    existing.message = message;
    existing.lastTransitionTime = rfc3339();
  }
}

function watcherMatches(watcher: Watcher, record: AppRecord): boolean {
  if (watcher.name !== undefined && watcher.name !== "" && watcher.name !== record.config.name) return false;
  if (watcher.appNamespace && watcher.appNamespace !== record.config.namespace) return false;
  return true;
}

function requestQuery(req: Request): URLSearchParams {
  return new URL(req.originalUrl, "http://simulator.invalid").searchParams;
}

/** server/server.go getToken: Bearer header, then the argocd.token cookie. */
/**
 * server.go getToken: the `Authorization: Bearer` header, then the `argocd.token` cookie; either counts only when
 * it looks like a JWT (three dot-separated parts, jwtutil.IsValid). Anything else is "no session information".
 */
function bearerToken(req: Request): string | undefined {
  const header = req.get("authorization");
  if (header?.startsWith("Bearer ")) {
    const token = header.slice("Bearer ".length);
    if (looksLikeJwt(token)) return token;
  }
  for (const part of (req.get("cookie") ?? "").split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === "argocd.token" && looksLikeJwt(rest.join("="))) return rest.join("=");
  }
  return undefined;
}

function looksLikeJwt(token: string): boolean {
  return token.split(".").length >= 3;
}

function sendJson(res: Response, json: string): void {
  res.status(200).type("application/json").send(json);
}

function sendError(res: Response, error: ApiError): void {
  if (res.headersSent) {
    if (!res.writableEnded) res.end();
    return;
  }
  res.status(error.httpStatus).json({ code: error.grpcCode, error: error.message, message: error.message });
}

function isBodyParserError(error: unknown): error is Error & { status: number } {
  return (
    error instanceof Error && "type" in error && typeof (error as { status?: unknown }).status === "number"
  );
}

function describeError(error: unknown): string {
  if (error instanceof GitCommandError) {
    const stderr = (error.cause as { stderr?: unknown } | undefined)?.stderr;
    const detail = typeof stderr === "string" && stderr.trim() !== "" ? `: ${stderr.trim()}` : "";
    return `${error.message}${detail}`;
  }
  return error instanceof Error ? error.message : String(error);
}

function exitCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === "number" ? code : undefined;
}

function positive(value: number | undefined, fallback: number, name: string, allowZero = false): number {
  const result = value ?? fallback;
  if (!Number.isFinite(result) || result < 0 || (!allowZero && result === 0)) {
    throw new Error(
      `ArgoCdSimulator: options.${name} must be a ${allowZero ? "non-negative" : "positive"} number`,
    );
  }
  return result;
}

function formatHost(address: string): string {
  return address.includes(":") ? `[${address}]` : address;
}
