import type { Server } from "node:http";
import { hostname } from "node:os";
import { join } from "node:path";
import type { AppConfig } from "./config/load-config.js";
import { childProcessEnvironment } from "./config/process-env.js";
import type { ControlPlane } from "./control-plane/control-plane.js";
import { NatsControlPlane } from "./control-plane/nats-control-plane.js";
import { TaskConnector } from "./control-plane/task-connector.js";
import { TaskLedger } from "./control-plane/task-ledger.js";
import { FileTaskStore } from "./task-store/file-task-store.js";
import { JetStreamTaskStore } from "./task-store/jetstream-task-store.js";
import { SelectedTaskStore } from "./task-store/selected-task-store.js";
import { DeploymentHandler } from "./deployments/deployment-handler.js";
import { PullRequestDelivery } from "./deployments/pull-request-delivery.js";
import { TargetResolver } from "./deployments/targets.js";
import { GitHubAppTokens } from "./gitops-repo/github-app-token.js";
import type { TokenSource } from "./gitops-repo/gitops-repo.js";
import { createPullRequestHost, type PullRequestHost } from "./gitops-repo/pull-requests/index.js";
import { SimpleGitGitopsRepo } from "./gitops-repo/simple-git-gitops-repo.js";
import { buildHttpApp, close, listen } from "./http/http-server.js";
import { mountWebhooks } from "./http/webhooks.js";
import type { Logger } from "./shared/logger.js";
import type { SecretRegistry } from "./shared/secrets.js";
import { ArgoCdClient } from "./sync/argocd/argocd-client.js";
import { ArgoCdPollSchedule } from "./sync/argocd/argocd-poll-schedule.js";
import { ArgoCdStream } from "./sync/argocd/argocd-stream.js";
import { ArgoCdSyncWatcher } from "./sync/argocd/argocd-sync-watcher.js";
import { FluxClient } from "./sync/flux/flux-client.js";
import { FluxReceiver } from "./sync/flux/flux-receiver.js";
import { FluxSyncWatcher } from "./sync/flux/flux-sync-watcher.js";
import { FluxWatch } from "./sync/flux/flux-watch.js";
import { watcherKey, type SyncWatcher } from "./sync/sync-watcher.js";
import { WakeUps } from "./sync/wake-ups.js";

/** How long a call to a Flux Receiver may take; notification-controller answers once it has annotated. */
const RECEIVER_TIMEOUT_MS = 10_000;

export interface AppDependencies {
  config: AppConfig;
  logger: Logger;
  secrets: SecretRegistry;
  /** Replaces the NATS control plane (the Keptn API mode will plug in here). */
  controlPlane?: ControlPlane;
  fetch?: typeof globalThis.fetch;
}

export interface App {
  /** Connects to the control plane, subscribes, and listens for HTTP. Resolves with the HTTP base URL. */
  start(): Promise<{ httpUrl: string }>;
  /** Stops taking events, answers the running ones, drains NATS, closes HTTP. */
  stop(): Promise<void>;
  /** Resolves when no deployment is in flight. */
  idle(): Promise<void>;
}

/** Registers every secret of the configuration so that no log line or event can show it. */
export function registerSecrets(config: AppConfig, secrets: SecretRegistry): void {
  for (const repository of config.repositories) {
    const auth = repository.auth;
    if (auth && "token" in auth) secrets.addBasicAuth(auth.username, auth.token);
    if (auth && "ssh" in auth) secrets.addPrivateKey(auth.ssh.privateKey);
    if (auth && "githubApp" in auth) secrets.addPrivateKey(auth.githubApp.privateKey);
    if (repository.signing) secrets.addPrivateKey(repository.signing.key);
    if (repository.pullRequest?.token) secrets.add(repository.pullRequest.token);
  }
  for (const server of config.argocd.servers) secrets.add(server.token);
  if (config.webhooks.flux?.hmacKey) secrets.add(config.webhooks.flux.hmacKey);
  if (config.webhooks.flux?.token) secrets.add(config.webhooks.flux.token);
  if (config.webhooks.argocd) secrets.add(config.webhooks.argocd.token);
  for (const cluster of config.flux.clusters) {
    // The URL's path is the Receiver's secret digest: neither the URL nor the path may show anywhere.
    if (cluster.receiver) {
      secrets.add(cluster.receiver.url);
      secrets.add(new URL(cluster.receiver.url).pathname);
    }
    if (cluster.receiver?.hmacKey) secrets.add(cluster.receiver.hmacKey);
  }
}

/** The composition root: builds every adapter from the configuration and wires them. No I/O until start(). */
export function buildApp(deps: AppDependencies): App {
  const { config, logger, secrets } = deps;
  registerSecrets(config, secrets);
  /** Notifications received by the webhooks reach the waiting deployments through this. */
  const wakeUps = new WakeUps();

  const nats = deps.controlPlane
    ? undefined
    : new NatsControlPlane({
        url: config.nats.url,
        queueGroup: config.integration.name,
        logger,
        connectTimeoutMs: 10_000,
        intake: config.nats.intake,
        stream: config.nats.stream,
        ackWaitMs: config.nats.ackWait,
      });
  const controlPlane = deps.controlPlane ?? nats!;
  /** The tasks in flight: a JetStream bucket when NATS has JetStream (state.store auto), else files. */
  const store = new SelectedTaskStore(async () => {
    const connection = nats?.natsConnection;
    if (config.state.store !== "file" && connection && (await nats!.hasJetStream())) {
      return new JetStreamTaskStore({
        connection,
        bucket: config.state.bucket ?? `keptn-gitops-${config.integration.name}`,
        replicas: config.state.replicas,
      });
    }
    if (config.state.store === "jetstream") {
      throw new Error(
        "state.store is jetstream, but the NATS server has no JetStream; enable JetStream, or set state.store: auto or file",
      );
    }
    return new FileTaskStore({ dir: config.state.dir ?? join(config.git.cacheDir, ".state") });
  });
  const ledger = new TaskLedger({
    store,
    replica: config.state.replicaId ?? hostname(),
    leaseMs: config.state.lease,
    logger,
  });
  const repo = new SimpleGitGitopsRepo({
    cacheDir: config.git.cacheDir,
    author: config.git.author,
    pushAttempts: config.git.pushAttempts,
    maxChangesPerCommit: config.git.maxChangesPerCommit,
    commandTimeoutMs: config.git.commandTimeout,
    baseEnv: childProcessEnvironment(),
    logger,
    secrets,
  });
  /** The installation tokens of the repositories with `auth.githubApp`, shared by git and pull requests. */
  const appTokens = new Map<string, TokenSource>();
  for (const repository of config.repositories) {
    if (!repository.auth || !("githubApp" in repository.auth)) continue;
    const { githubApp } = repository.auth;
    const tokens = new GitHubAppTokens({
      ...githubApp,
      configuredAt: `repository "${repository.name}"`,
      secrets,
      ...(deps.fetch ? { fetch: deps.fetch } : {}),
    });
    appTokens.set(repository.name, (signal) => tokens.tokenFor(signal));
  }
  /** The pull-request host of each repository with `pullRequest`; no I/O until a deployment uses it. */
  const pullRequestHosts = new Map<string, PullRequestHost>();
  for (const repository of config.repositories) {
    if (!repository.pullRequest) continue;
    const token = repository.pullRequest.token ?? appTokens.get(repository.name);
    if (!token) throw new Error(`repository ${repository.name} has pullRequest without a token`);
    pullRequestHosts.set(
      repository.name,
      createPullRequestHost(
        repository,
        repository.pullRequest,
        token,
        deps.fetch ? { fetch: deps.fetch } : {},
      ),
    );
  }
  /** One watch stream per Argo CD server that has `watch` on; closed when the service stops. */
  const streams: ArgoCdStream[] = [];
  /** One shared poll schedule per Argo CD server; stopped when the service stops. */
  const schedules: ArgoCdPollSchedule[] = [];
  /** One shared watch per Flux cluster that has `watch` on; closed when the service stops. */
  const fluxWatches: FluxWatch[] = [];
  /** The Kubernetes API client of each Flux cluster; connected at start. */
  const fluxClients: FluxClient[] = [];
  /** One sync watcher per configured Argo CD server and Flux cluster, by `watcherKey(tool, name)`. */
  const syncWatchers = new Map<string, SyncWatcher>([
    ...config.argocd.servers.map((server): [string, SyncWatcher] => {
      const stream = server.watch
        ? new ArgoCdStream({
            baseUrl: server.url,
            token: server.token,
            logger,
            ...(deps.fetch ? { fetch: deps.fetch } : {}),
          })
        : undefined;
      if (stream) streams.push(stream);
      const client = new ArgoCdClient({
        baseUrl: server.url,
        token: server.token,
        requestTimeoutMs: server.requestTimeout,
        ...(deps.fetch ? { fetch: deps.fetch } : {}),
      });
      const schedule = new ArgoCdPollSchedule({
        client,
        intervalMs: server.pollInterval,
        logger,
        ...(stream ? { stream } : {}),
      });
      schedules.push(schedule);
      return [
        watcherKey("argocd", server.name),
        new ArgoCdSyncWatcher({
          client,
          pollIntervalMs: server.pollInterval,
          wakeUps,
          schedule,
          watchPollIntervalMs: server.watchPollInterval,
          ...(stream ? { stream } : {}),
        }),
      ];
    }),
    ...config.flux.clusters.map((cluster): [string, SyncWatcher] => {
      const client = new FluxClient({
        cluster: cluster.name,
        ...(cluster.kubeconfig ? { kubeconfig: cluster.kubeconfig } : {}),
        ...(cluster.context ? { context: cluster.context } : {}),
      });
      fluxClients.push(client);
      const watch = cluster.watch ? new FluxWatch({ client, logger }) : undefined;
      const receiver = cluster.receiver
        ? new FluxReceiver({
            cluster: cluster.name,
            ...cluster.receiver,
            requestTimeoutMs: RECEIVER_TIMEOUT_MS,
            ...(deps.fetch ? { fetch: deps.fetch } : {}),
          })
        : undefined;
      if (watch) fluxWatches.push(watch);
      return [
        watcherKey("flux", cluster.name),
        new FluxSyncWatcher({
          client,
          pollIntervalMs: cluster.pollInterval,
          watchPollIntervalMs: cluster.watchPollInterval,
          wakeUps,
          ...(watch ? { watch } : {}),
          ...(receiver ? { receiver } : {}),
        }),
      ];
    }),
  ]);
  const connector = new TaskConnector({
    controlPlane,
    source: config.integration.name,
    logger,
    secrets,
    ledger,
    stopGraceMs: config.shutdown.gracePeriod,
    doneRetentionMs: config.state.doneRetention,
    handlers: [
      new DeploymentHandler({
        targets: new TargetResolver(config, appTokens),
        repo,
        syncWatchers,
        fallbackTimeoutMs: 60_000,
        ...(config.git.commitMessage ? { commitMessage: config.git.commitMessage } : {}),
        pullRequests: new PullRequestDelivery({
          hosts: pullRequestHosts,
          ...(config.keptn.bridgeUrl ? { bridgeUrl: config.keptn.bridgeUrl } : {}),
        }),
      }),
    ],
  });
  const http = buildHttpApp({ checks: () => ({ config: true, nats: controlPlane.isConnected() }) });
  mountWebhooks(http, {
    maxBodyBytes: config.webhooks.maxBodyBytes,
    ...(config.webhooks.flux?.hmacKey ? { fluxHmacKey: config.webhooks.flux.hmacKey } : {}),
    ...(config.webhooks.flux?.token ? { fluxToken: config.webhooks.flux.token } : {}),
    ...(config.webhooks.argocd ? { argocdToken: config.webhooks.argocd.token } : {}),
    wakeUps,
    logger,
  });
  let server: Server | undefined;

  return {
    async start() {
      const listening = await listen(http, config.http.host, config.http.port);
      server = listening.server;
      await Promise.all(fluxClients.map((client) => client.connect()));
      await controlPlane.start();
      await connector.start();
      logger.info(
        { http: listening.url, integration: config.integration.name },
        "keptn-gitops-service started",
      );
      return { httpUrl: listening.url };
    },
    async stop() {
      await connector.stop();
      await Promise.all([...streams, ...fluxWatches].map((watch) => watch.close()));
      for (const schedule of schedules) schedule.stop();
      await store.close();
      await controlPlane.close();
      await repo.close();
      if (server) await close(server);
      logger.info("keptn-gitops-service stopped");
    },
    idle: () => connector.idle(),
  };
}
