import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { connect, type NatsConnection } from "nats";
import { buildApp, type App } from "../../src/app.js";
import { loadConfig } from "../../src/config/load-config.js";
import { createLogger } from "../../src/shared/logger.js";
import { SecretRegistry } from "../../src/shared/secrets.js";
import {
  simulatorBackend,
  type ArgoCdBackend,
  type ArgoCdBackendFactory,
  type GitopsSetup,
  type LabApplication,
  type SimulatorTimings,
} from "./argocd-backend.js";
import type { ArgoCdSimulator } from "../simulators/argocd/argocd-simulator.js";
import type { FluxSimulator } from "../simulators/flux/flux-simulator.js";
import { GitHttpServer } from "../support/git-http-server.js";
import {
  burstServices,
  createGitopsFixture,
  defaultGitopsFiles,
  type GitopsFixture,
} from "../support/gitops-fixture.js";
import { NatsServerProcess } from "../support/nats-server.js";
import { createKeptnStream } from "../support/keptn-stream.js";
import { subscribeCollector, type EventCollector } from "../support/wait.js";

export const GIT_TOKEN = "git-token-9f8e7d6c5b4a";
export const WRONG_GIT_TOKEN = "wrong-token-0a1b2c3d4e";
export { SIMULATOR_TOKEN as ARGO_TOKEN } from "./argocd-backend.js";

export interface KeptnEvent {
  type: string;
  id: string;
  source: string;
  specversion: string;
  shkeptncontext: string;
  triggeredid?: string;
  shkeptnspecversion?: string;
  data: {
    project: string;
    stage: string;
    service: string;
    labels?: Record<string, string>;
    status?: string;
    result?: string;
    message?: string;
    deployment?: {
      deploymentstrategy: string;
      deploymentNames: string[];
      deploymentURIsLocal: string[];
      deploymentURIsPublic: string[];
      gitCommit: string;
    };
  };
}

export interface TriggerOptions {
  project?: string;
  stage?: string;
  service?: string;
  image?: string | null;
  labels?: Record<string, string> | null;
  /** Replaces the whole body (for malformed events). */
  body?: unknown;
  /** Extra top-level fields, or overrides. */
  envelope?: Record<string, unknown>;
}

/** How the world is tuned; every field has the default the e2e tests use. */
export interface DeploymentWorldOptions {
  /** The Argo CD the service talks to; default the simulator with `argo` timings. */
  backend?: ArgoCdBackendFactory;
  /** Timings of the Argo CD simulator; default poll 100 ms, sync 50 ms, health 50 ms. */
  argo?: SimulatorTimings;
  /** `timeout` of the project `sockshop-slow` (the timeout scenario); default "2s". */
  slowTimeout?: string;
  /** How long `answersFor` waits for a `.finished` by default; 15 s. */
  answerTimeoutMs?: number;
  /** The service's `argocd.servers[].pollInterval` in milliseconds; default 50. */
  servicePollIntervalMs?: number;
  /** The service's `log.level`; default "debug". Log lines are kept in `logLines` either way. */
  logLevel?: "trace" | "debug" | "info" | "warn" | "error";
  /** The service's `argocd.servers[].watch`; default true (the watch stream). */
  watch?: boolean;
  /** The service's `flux.clusters[].watch`; default true (the list-and-watch of Flux objects). */
  fluxWatch?: boolean;
  /** Turns on the webhook receivers with these secrets (and `maxBodyBytes` 4096). */
  webhooks?: { fluxHmacKey: string; argocdToken: string; fluxToken?: string };
  /** Also a Flux cluster: the service then deploys project `podtato` through Flux (see `fluxFiles`). */
  flux?: FluxBackendFactory;
  /** More files in the seed commit (e.g. `burstGitopsFiles`), on top of the default ones. */
  extraFiles?: Record<string, string>;
  /** The service's `git.maxChangesPerCommit`; default the service's own (50). */
  maxChangesPerCommit?: number;
  /** The service's `git.dryRun`; default false. Project `sockshop-dryrun` is a dry run either way. */
  dryRun?: boolean;
  /**
   * Also a pull-request host (its API simulator) for the repository, served as `sockshop/gitops`: projects
   * `sockshop-pr*` deploy through pull requests (see `pullRequestTargets`).
   */
  pullRequests?: PullRequestHostFactory;
  /**
   * nats-server with JetStream, and the stream `keptn` (subjects `sh.keptn.>`) as Keptn's shipyard-controller
   * creates it: the service then takes triggered events through a durable consumer and keeps its tasks in a
   * key-value bucket.
   */
  jetstream?: boolean;
  /**
   * false: the service is not built in this process; `serviceProcess()` runs it as a child process (to kill it)
   * with the same configuration. Default true.
   */
  inProcess?: boolean;
  /** The service's `state.lease`; default the service's own (30s). */
  lease?: string;
  /** The service's `nats.ackWait`; default the service's own (30s). */
  ackWait?: string;
}

/** The pull-request API the service talks to, as a world starts it over the fixture's bare repository. */
export interface PullRequestHostWorld {
  provider: "github" | "gitlab";
  /** The API root, as `pullRequest.apiUrl`. */
  apiUrl: string;
  /** The token the API takes. */
  token: string;
  /** A GitHub App the API knows (GitHub only): repository `gitops-app` authenticates with it. */
  app?: { id: number; installationId: number; privateKey: string };
  /** The tokens the API issued (GitHub App installation tokens): the git server takes those too. */
  issuedTokens(): string[];
  stop(): Promise<void>;
}
export type PullRequestHostFactory = (bareDir: string) => Promise<PullRequestHostWorld>;

/** `<service>-dev` for each of `burstServices(count)`: chart `charts/<service>` with `values-dev.yaml`, automated. */
export function burstApplications(count: number): LabApplication[] {
  return burstServices(count).map((service) => ({
    name: `${service}-dev`,
    path: `charts/${service}`,
    automated: true,
    valueFiles: ["values-dev.yaml"],
    namespace: "sockshop-dev",
  }));
}

/** The part of a Flux object the scenarios look at, as the API server has it. */
export interface FluxObjectView {
  metadata?: { generation?: number; annotations?: Record<string, string> };
  status?: {
    conditions?: Array<{ type: string; status: string; reason: string; message: string }>;
    observedGeneration?: number;
    lastAppliedRevision?: string;
    lastAttemptedRevision?: string;
    history?: Array<Record<string, unknown>>;
  };
}

/** A Flux the service reads through the Kubernetes API: real (lab) or simulated. */
export interface FluxBackend {
  /** A kubeconfig file for the service. */
  kubeconfig: string;
  /** The Kustomization `name` in flux-system as the API server has it. */
  kustomization(name: string): Promise<FluxObjectView>;
  /** The GitRepository `name` in flux-system as the API server has it. */
  gitRepository(name: string): Promise<FluxObjectView>;
  /** The HelmRelease `name` in flux-system as the API server has it (FLUX_HELM_RELEASES). */
  helmRelease(name: string): Promise<FluxObjectView>;
  /** When it runs notification-controller: send every Kustomization event to `url`, signed with `hmacKey`. */
  sendNotifications?(url: string, hmacKey: string): Promise<void>;
  /** A notification-controller Receiver for the service to call instead of patching (`flux.clusters[].receiver`). */
  receiver?: { url: string; hmacKey: string };
  /** Every call the service made to the Kubernetes API, when the backend records them (the simulator). */
  requests?: ReadonlyArray<{ method: string; path: string; query: Record<string, string> }>;
  /** The simulator itself, when the backend is one (the bench times its writes). */
  simulator?: FluxSimulator;
  stop(): Promise<void>;
}
export type FluxBackendFactory = (setup: GitopsSetup) => Promise<FluxBackend>;

/** podtato-head in `stage`, in namespace `podtato-<stage>`, applied by Flux (Kustomization podtato-head-<stage>). */
const podtatoFiles = (stage: string): Record<string, string> => ({
  [`clusters/${stage}/podtato-head/namespace.yaml`]: `apiVersion: v1
kind: Namespace
metadata:
  name: podtato-${stage}
`,
  [`clusters/${stage}/podtato-head/deployment.yaml`]: `# podtato-head in ${stage}, applied by Flux (Kustomization podtato-head-${stage})
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podtato-head
  namespace: podtato-${stage}
  labels: { app: podtato-head, stage: ${stage} }
spec:
  replicas: 1
  selector:
    matchLabels: { app: podtato-head, stage: ${stage} }
  template:
    metadata:
      labels: { app: podtato-head, stage: ${stage} }
    spec:
      containers:
        - name: app
          image: ghcr.io/podtato-head/podtato-server:0.3.0 # managed by Keptn
`,
});

/** podtato-head as a Helm chart for Flux's helm-controller, apart from the Argo CD charts of `charts/`. */
const podtatoChartFiles: Record<string, string> = {
  "flux-charts/podtato-head/Chart.yaml": `apiVersion: v2
name: podtato-head
description: podtato-head, released by Flux (HelmReleases podtato-head-helm-<stage>) from this repository
version: 0.1.0
`,
  "flux-charts/podtato-head/values.yaml": `replicaCount: 1
image:
  repository: ghcr.io/podtato-head/podtato-server
  tag: "0.3.0"
`,
  "flux-charts/podtato-head/templates/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  labels:
    app.kubernetes.io/name: {{ .Chart.Name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels:
      app.kubernetes.io/instance: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/instance: {{ .Release.Name }}
    spec:
      containers:
        - name: app
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
`,
};

/** The values of podtato-head's chart in `stage` (HelmRelease podtato-head-helm-<stage>, `spec.chart.spec.valuesFiles`). */
const podtatoValues = (stage: string): Record<string, string> => ({
  [`flux-charts/podtato-head/values-${stage}.yaml`]: `# podtato-head in ${stage}, released by Flux (HelmRelease podtato-head-helm-${stage})
image:
  repository: ghcr.io/podtato-head/podtato-server
  tag: "0.3.0" # managed by Keptn
`,
});

/**
 * What the Flux targets deploy:
 * - `clusters/<stage>/podtato-head/`, one Kustomization per stage, with the Namespace next to the Deployment (Flux
 *   does not create namespaces). `dev` has no health checks (Ready once applied); `health` waits for the Deployment
 *   (`wait: true`), which never becomes ready in a cluster without nodes.
 * - `flux-charts/podtato-head/`, a chart with one values file per stage, one HelmRelease per stage
 *   (FLUX_HELM_RELEASES in flux-backend.ts, releases in the namespaces `podtato-helm-<stage>`).
 */
export const fluxFiles: Readonly<Record<string, string>> = {
  ...podtatoFiles("dev"),
  ...podtatoFiles("health"),
  ...podtatoChartFiles,
  ...podtatoValues("dev"),
  ...podtatoValues("wait"),
  ...podtatoValues("pinned"),
};

interface ServiceConfigValues {
  kubeconfig: string | undefined;
  fluxReceiver: boolean;
  watch: boolean;
  fluxWatch: boolean;
  webhooks: boolean;
  repoUrl: string;
  argoUrl: string;
  cacheDir: string;
  pollIntervalMs: number;
  logLevel: string;
  slowTimeout: string;
  maxChangesPerCommit: number | undefined;
  dryRun: boolean;
  pullRequests: PullRequestHostWorld | undefined;
  lease: string | undefined;
  ackWait: string | undefined;
}

/**
 * The repositories and targets of pull-request mode: `gitops-pr` (a token) and, with a GitHub App, `gitops-app`,
 * both the fixture's repository served at `/sockshop/gitops.git`, so that its path names it on the host.
 */
function pullRequestSections(
  host: PullRequestHostWorld,
  prRepoUrl: string,
): { repositories: string; targets: string } {
  const pullRequest = `{ provider: ${host.provider}, apiUrl: "${host.apiUrl}", pollInterval: 50ms }`;
  const target = (project: string, repository: string, extra = "") => `  - match: { project: ${project} }
    repository: ${repository}
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: lab }
${extra}`;
  return {
    repositories: `  - name: gitops-pr
    url: ${prRepoUrl}
    auth: { token: { fromEnv: TEST_GIT_TOKEN } }
    pullRequest: { provider: ${host.provider}, apiUrl: "${host.apiUrl}", token: { fromEnv: TEST_PR_TOKEN }, pollInterval: 50ms }
${
  host.app
    ? `  - name: gitops-app
    url: ${prRepoUrl}
    auth: { githubApp: { appId: ${host.app.id}, installationId: ${host.app.installationId}, privateKey: { fromEnv: TEST_APP_KEY }, apiUrl: "${host.apiUrl}" } }
    pullRequest: ${pullRequest}
`
    : ""
}`,
    targets: [
      target("sockshop-pr", "gitops-pr"),
      target("sockshop-pr-open", "gitops-pr", "    pullRequest: { mode: open-only }\n"),
      // GitHub has no auto-merge through REST: the configuration refuses it there.
      host.provider === "gitlab"
        ? target("sockshop-pr-auto", "gitops-pr", "    pullRequest: { mode: auto-merge }\n")
        : "",
      target("sockshop-pr-direct", "gitops-pr", "    pullRequest: false\n"),
      `  - match: { project: sockshop-pr-multi }
    repository: gitops-pr
    files:
      - { file: "charts/{service}/values-{stage}.yaml", change: { kind: helm-values, tag: image.tag } }
      - { file: "overlays/{stage}/{service}/kustomization.yaml", change: { kind: kustomize-images } }
    deploy: { tool: argocd, server: lab }
`,
      host.app ? target("sockshop-app", "gitops-app") : "",
    ].join(""),
  };
}

function serviceConfig({
  kubeconfig,
  fluxReceiver,
  watch,
  fluxWatch,
  webhooks,
  repoUrl,
  argoUrl,
  cacheDir,
  pollIntervalMs,
  logLevel,
  slowTimeout,
  maxChangesPerCommit,
  dryRun,
  pullRequests,
  lease,
  ackWait,
}: ServiceConfigValues): string {
  const review = pullRequests
    ? pullRequestSections(pullRequests, repoUrl.replace(/gitops\.git$/, "sockshop/gitops.git"))
    : { repositories: "", targets: "" };
  return `
integration: { name: gitops-service }
http: { host: 127.0.0.1, port: 0 }
shutdown: { gracePeriod: 100ms }
${lease ? `state: { lease: ${lease} }\n` : ""}${ackWait ? `nats: { ackWait: ${ackWait} }\n` : ""}
log: { level: ${logLevel} }
git:
  cacheDir: ${cacheDir}
  pushAttempts: 5
${maxChangesPerCommit === undefined ? "" : `  maxChangesPerCommit: ${maxChangesPerCommit}\n`}${dryRun ? "  dryRun: true\n" : ""}${
    webhooks
      ? `webhooks:
  maxBodyBytes: 4096
  flux: { hmacKey: { fromEnv: TEST_FLUX_HMAC_KEY }, token: { fromEnv: TEST_FLUX_WEBHOOK_TOKEN } }
  argocd: { token: { fromEnv: TEST_ARGOCD_WEBHOOK_TOKEN } }
`
      : ""
  }repositories:
  - name: gitops
    url: ${repoUrl}
    branch: main
    auth: { token: { fromEnv: TEST_GIT_TOKEN } }
  - name: gitops-wrong-token
    url: ${repoUrl}
    auth: { token: { fromEnv: TEST_WRONG_GIT_TOKEN } }
  - name: gitops-missing
    url: ${repoUrl.replace("gitops.git", "missing.git")}
    auth: { token: { fromEnv: TEST_GIT_TOKEN } }
${review.repositories}argocd:
  servers:
    - name: lab
      url: ${argoUrl}
      token: { fromEnv: TEST_ARGO_TOKEN }
      pollInterval: ${pollIntervalMs}ms
      watch: ${watch}
${
  kubeconfig
    ? `flux:
  clusters:
    - name: lab
      kubeconfig: ${kubeconfig}
      pollInterval: ${pollIntervalMs}ms
      watch: ${fluxWatch}
${fluxReceiver ? "      receiver: { url: { fromEnv: TEST_FLUX_RECEIVER_URL }, hmacKey: { fromEnv: TEST_FLUX_RECEIVER_KEY } }\n" : ""}`
    : ""
}targets:
${
  kubeconfig
    ? `  - match: { project: podtato }
    repository: gitops
    file: "clusters/{stage}/{service}/deployment.yaml"
    change: { kind: manifest-image, container: app }
    deploy: { tool: flux, cluster: lab, name: "{service}-{stage}" }
  - match: { project: podtato-slow }
    repository: gitops
    file: "clusters/{stage}/{service}/deployment.yaml"
    change: { kind: manifest-image, container: app }
    deploy: { tool: flux, cluster: lab, name: "{service}-{stage}" }
    timeout: ${slowTimeout}
  - match: { project: podtato-missing }
    repository: gitops
    file: "clusters/{stage}/{service}/deployment.yaml"
    change: { kind: manifest-image, container: app }
    deploy: { tool: flux, cluster: lab, name: "no-such-kustomization" }
  - match: { project: podtato-helm }
    repository: gitops
    file: "flux-charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: flux, cluster: lab, kind: HelmRelease, name: "{service}-helm-{stage}", namespace: flux-system }
  - match: { project: podtato-helm-slow }
    repository: gitops
    file: "flux-charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: flux, cluster: lab, kind: HelmRelease, name: "{service}-helm-{stage}" }
    timeout: ${slowTimeout}
  - match: { project: podtato-helm-missing }
    repository: gitops
    file: "flux-charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: flux, cluster: lab, kind: HelmRelease, name: "no-such-helmrelease" }
`
    : ""
}${review.targets}  - match: { project: sockshop, stage: production, service: orders }
    repository: gitops
    file: "manifests/{stage}/{service}/deployment.yaml"
    change: { kind: manifest-image, container: orders }
    deploy: { tool: argocd, server: lab }
  - match: { project: sockshop }
    repository: gitops
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: lab }
    uris: { local: ["http://{service}.{project}-{stage}:8080"] }
  - match: { project: sockshop-slow }
    repository: gitops
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: lab }
    timeout: ${slowTimeout}
  - match: { project: sockshop-dryrun }
    repository: gitops
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: lab }
    dryRun: true
  - match: { project: locked }
    repository: gitops-wrong-token
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: lab }
  - match: { project: gone }
    repository: gitops-missing
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: lab }
`;
}

/**
 * Everything a deployment touches, for real: a nats-server, a bare GitOps repo behind `git http-backend` with a
 * token check, the Argo CD simulator reading that repo, and the service wired to them. Tests speak to it as
 * Keptn would: they publish `deployment.triggered` on NATS and read the answers from NATS.
 */
export class DeploymentWorld {
  readonly logLines: string[] = [];
  httpUrl = "";
  private constructor(
    readonly nats: NatsServerProcess,
    readonly fixture: GitopsFixture,
    readonly gitServer: GitHttpServer,
    readonly argo: ArgoCdBackend,
    readonly flux: FluxBackend | undefined,
    readonly pullRequestHost: PullRequestHostWorld | undefined,
    readonly keptn: NatsConnection,
    readonly answers: EventCollector,
    readonly cacheDir: string,
    private readonly options: DeploymentWorldOptions,
    private app: App | undefined,
  ) {}

  static async start(options: DeploymentWorldOptions = {}): Promise<DeploymentWorld> {
    const nats = await NatsServerProcess.start({ jetstream: options.jetstream ?? false });
    if (options.jetstream) await createKeptnStream(nats.url);
    const fixture = await createGitopsFixture({
      ...defaultGitopsFiles,
      ...(options.flux ? fluxFiles : {}),
      ...options.extraFiles,
    });
    let pullRequestHost: PullRequestHostWorld | undefined;
    if (options.pullRequests) {
      // The same bare repository at /sockshop/gitops.git too: its URL path is its name on the host.
      await mkdir(join(fixture.root, "repos", "sockshop"));
      await symlink(fixture.bareDir, join(fixture.root, "repos", "sockshop", "gitops.git"));
      pullRequestHost = await options.pullRequests(fixture.bareDir);
    }
    const gitServer = await GitHttpServer.start({
      projectRoot: join(fixture.root, "repos"),
      token: GIT_TOKEN,
      acceptsToken: (token) => pullRequestHost?.issuedTokens().includes(token) ?? false,
    });
    const repoUrl = gitServer.repoUrl("gitops.git");
    const backend = options.backend ?? simulatorBackend(options.argo);
    const setup = { bareDir: fixture.bareDir, repoUrl, gitUsername: gitServer.username, gitToken: GIT_TOKEN };
    const argo = await backend(setup);
    const flux = options.flux ? await options.flux(setup) : undefined;
    const keptn = await connect({ servers: nats.url });
    const answers = await subscribeCollector(keptn, "sh.keptn.event.deployment.*");
    const cacheDir = await mkdtemp(join(tmpdir(), "gitops-cache-"));
    const world = new DeploymentWorld(
      nats,
      fixture,
      gitServer,
      argo,
      flux,
      pullRequestHost,
      keptn,
      answers,
      cacheDir,
      options,
      undefined,
    );
    await world.startService();
    return world;
  }

  /** The service's configuration file text and the environment it reads its secrets from. */
  serviceSetup(): { text: string; env: Record<string, string> } {
    const text = serviceConfig({
      kubeconfig: this.flux?.kubeconfig,
      fluxReceiver: this.flux?.receiver !== undefined,
      watch: this.options.watch ?? true,
      fluxWatch: this.options.fluxWatch ?? true,
      webhooks: this.options.webhooks !== undefined,
      repoUrl: this.gitServer.repoUrl("gitops.git"),
      argoUrl: this.argo.url,
      cacheDir: this.cacheDir,
      pollIntervalMs: this.options.servicePollIntervalMs ?? 50,
      logLevel: this.options.logLevel ?? "debug",
      slowTimeout: this.options.slowTimeout ?? "2s",
      maxChangesPerCommit: this.options.maxChangesPerCommit,
      dryRun: this.options.dryRun ?? false,
      pullRequests: this.pullRequestHost,
      lease: this.options.lease,
      ackWait: this.options.ackWait,
    });
    const env: Record<string, string | undefined> = {
      NATS_URL: this.nats.url,
      TEST_GIT_TOKEN: GIT_TOKEN,
      TEST_WRONG_GIT_TOKEN: WRONG_GIT_TOKEN,
      TEST_ARGO_TOKEN: this.argo.token,
      TEST_FLUX_HMAC_KEY: this.options.webhooks?.fluxHmacKey,
      TEST_FLUX_RECEIVER_URL: this.flux?.receiver?.url,
      TEST_FLUX_RECEIVER_KEY: this.flux?.receiver?.hmacKey,
      TEST_FLUX_WEBHOOK_TOKEN: this.options.webhooks?.fluxToken ?? "flux-generic-token-unused-7e9a",
      TEST_ARGOCD_WEBHOOK_TOKEN: this.options.webhooks?.argocdToken,
      TEST_PR_TOKEN: this.pullRequestHost?.token,
      TEST_APP_KEY: this.pullRequestHost?.app?.privateKey,
    };
    return {
      text,
      env: Object.fromEntries(
        Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined),
      ),
    };
  }

  async startService(): Promise<void> {
    if (this.options.inProcess === false) return;
    const secrets = new SecretRegistry();
    const setup = this.serviceSetup();
    const config = loadConfig({ text: setup.text, source: "test config", env: setup.env });
    const lines = this.logLines;
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
        done();
      },
    });
    const logger = createLogger({ level: config.log.level, secrets, destination });
    this.app = buildApp({ config, logger, secrets });
    this.httpUrl = (await this.app.start()).httpUrl;
    if (this.options.webhooks && this.flux?.sendNotifications) {
      await this.flux.sendNotifications(`${this.httpUrl}/webhooks/flux`, this.options.webhooks.fluxHmacKey);
    }
  }

  /** The Argo CD simulator, when that is the backend (the lab has none). */
  get simulator(): ArgoCdSimulator | undefined {
    return (this.argo as Partial<{ simulator: ArgoCdSimulator }>).simulator;
  }

  /** Publishes a deployment.triggered event the way the shipyard-controller does; returns its id. */
  trigger(options: TriggerOptions = {}): { id: string; shkeptncontext: string } {
    const id = randomUUID();
    const shkeptncontext = randomUUID();
    const image = options.image === undefined ? "docker.io/keptnexamples/carts:0.13.3" : options.image;
    const body = options.body ?? {
      specversion: "1.0",
      id,
      type: "sh.keptn.event.deployment.triggered",
      source: "shipyard-controller",
      datacontenttype: "application/json",
      time: new Date().toISOString(),
      shkeptncontext,
      shkeptnspecversion: "0.2.4",
      gitcommitid: "521747298a3790fde1710f3aa2d03b55020575aa",
      data: {
        project: options.project ?? "sockshop",
        stage: options.stage ?? "dev",
        service: options.service ?? "carts",
        labels: options.labels === undefined ? { buildId: "17" } : options.labels,
        configurationChange: { values: image === null ? {} : { image } },
        deployment: { deploymentURIsLocal: null, deploymentstrategy: "direct" },
        temporaryData: { distributor: { subscriptionID: "0c9a5b5e" } },
      },
      ...options.envelope,
    };
    this.keptn.publish(
      "sh.keptn.event.deployment.triggered",
      new TextEncoder().encode(typeof body === "string" ? body : JSON.stringify(body)),
    );
    return { id, shkeptncontext };
  }

  /** Waits for the .finished answering `triggeredid`, and returns it with the .started that must precede it. */
  async answersFor(
    triggeredid: string,
    timeoutMs = this.options.answerTimeoutMs ?? 15_000,
  ): Promise<{ started: KeptnEvent; finished: KeptnEvent }> {
    const isAnswer = (kind: string) => (event: unknown) =>
      (event as KeptnEvent).triggeredid === triggeredid &&
      (event as KeptnEvent).type === `sh.keptn.event.deployment.${kind}`;
    const finished = (await this.answers.waitFor(
      isAnswer("finished"),
      timeoutMs,
      `deployment.finished for ${triggeredid}`,
    )) as KeptnEvent;
    const startedIndex = this.answers.events.findIndex(isAnswer("started"));
    const finishedIndex = this.answers.events.indexOf(finished);
    if (startedIndex < 0 || startedIndex > finishedIndex)
      throw new Error(`no deployment.started before the finished of ${triggeredid}`);
    return { started: this.answers.events[startedIndex] as KeptnEvent, finished };
  }

  /** The answers for `triggeredid` as Keptn's shipyard-controller reads them (see `storedAnswersById`). */
  async storedAnswers(triggeredid: string): Promise<KeptnEvent[]> {
    return (await this.storedAnswersById()).get(triggeredid) ?? [];
  }

  /**
   * Every deployment answer in the `keptn` stream (with `jetstream`), by triggered id, in stream order: the answers
   * as Keptn's shipyard-controller reads them, where an answer published twice with the same message id is kept
   * once. The stream is read once per call.
   */
  async storedAnswersById(): Promise<Map<string, KeptnEvent[]>> {
    const manager = await this.keptn.jetstreamManager();
    const { state } = await manager.streams.info("keptn");
    const found = new Map<string, KeptnEvent[]>();
    for (let seq = state.first_seq; seq <= state.last_seq; seq++) {
      const message = await manager.streams.getMessage("keptn", { seq }).catch(() => undefined);
      if (!message || !message.subject.startsWith("sh.keptn.event.deployment.")) continue;
      const event = message.json<KeptnEvent>();
      if (!event.triggeredid) continue;
      found.set(event.triggeredid, [...(found.get(event.triggeredid) ?? []), event]);
    }
    return found;
  }

  /** Every answer sent for `triggeredid` so far. */
  answersSoFar(triggeredid: string): KeptnEvent[] {
    return (this.answers.events as KeptnEvent[]).filter((e) => e.triggeredid === triggeredid);
  }

  async stop(): Promise<void> {
    await this.app?.stop();
    await this.answers.close();
    await this.keptn.close();
    await this.argo.stop();
    await this.flux?.stop();
    await this.pullRequestHost?.stop();
    await this.gitServer.stop();
    await this.nats.stop();
    await this.fixture.remove();
    await rm(this.cacheDir, { recursive: true, force: true });
  }
}

/**
 * One world for the tests of the enclosing `describe`: started before them (with the time a lab needs), stopped
 * after them. Returns the world, for use inside the tests.
 */
export function worldFor(start: () => Promise<DeploymentWorld>): () => DeploymentWorld {
  let world: DeploymentWorld | undefined;
  before(async function () {
    this.timeout(300_000);
    world = await start();
  });
  after(async () => {
    await world?.stop();
  });
  return () => {
    if (!world) throw new Error("the world did not start");
    return world;
  };
}
