import type { SyncOutcome, SyncRequest, SyncWatcher } from "../sync-watcher.js";
import { abortable } from "../../shared/abortable.js";
import { News } from "../news.js";
import { WaitLoop } from "../wait-loop.js";
import type { WakeUps } from "../wake-ups.js";
import type { Application } from "./application-schema.js";
import type { ArgoCdClient } from "./argocd-client.js";
import type { ArgoCdPollSchedule } from "./argocd-poll-schedule.js";
import type { ArgoCdStream } from "./argocd-stream.js";

export interface ArgoCdSyncWatcherOptions {
  client: ArgoCdClient;
  /** How often the application is read while waiting (while the watch stream is down, or without one). */
  pollIntervalMs: number;
  /** The server's watch stream: each frame about the application is judged at once. */
  stream?: ArgoCdStream;
  /** How often the application is read while the stream is up: a safety net only. */
  watchPollIntervalMs?: number;
  /** Argo CD Notifications received by the webhook: each makes the application be read at once. */
  wakeUps?: WakeUps;
  /** One list read per interval for all deployments on the server, while the stream is down or off. */
  schedule?: ArgoCdPollSchedule;
}

const short = (sha: string | undefined) => (sha ? sha.slice(0, 7) : "none");

/** The revisions a field holds: the single `revision` of a one-source app, or `revisions[]` of a multi-source one. */
function revisionsOf(
  field: { revision?: string | undefined; revisions?: string[] | undefined } | undefined,
): string[] {
  return [field?.revision, ...(field?.revisions ?? [])].filter((r): r is string => !!r);
}

async function anyIncludes(request: SyncRequest, revisions: string[]): Promise<string | undefined> {
  for (const revision of revisions) if (await request.includes(revision)) return revision;
  return undefined;
}

/** Whether Argo CD syncs the app on its own: an automated policy that is not switched off. */
function autoSyncs(app: Application): boolean {
  const automated = app.spec?.syncPolicy?.automated;
  return !!automated && automated.enabled !== false;
}

/** " (as part of revision abc1234)" when Argo CD worked on a later revision that contains the commit. */
function partOf(revision: string, commit: string): string {
  return revision.toLowerCase() === commit.toLowerCase() ? "" : ` (as part of revision ${short(revision)})`;
}

/** One line of what the application looked like, for timeout messages. */
function describe(app: Application): string {
  const status = app.status;
  const operation = status?.operationState;
  const parts = [
    `sync ${status?.sync?.status ?? "Unknown"} at ${short(revisionsOf(status?.sync)[0])}`,
    `health ${status?.health?.status ?? "Unknown"}`,
    operation
      ? `last operation ${operation.phase ?? "?"} at ${short(revisionsOf(operation.syncResult)[0] ?? revisionsOf(operation.operation?.sync)[0])}`
      : "no sync operation yet",
  ];
  // A failed attempt that Argo CD will retry stays Running; its message says why it failed and when it retries.
  if (operation?.phase === "Running" && operation.retryCount && operation.message) {
    parts.push(`retry ${operation.retryCount}: ${operation.message}`);
  }
  return parts.join(", ");
}

function unhealthyDetails(app: Application): string {
  const own = app.status?.health?.message;
  const resources = (app.status?.resources ?? [])
    .filter((r) => r.health?.status && r.health.status !== "Healthy")
    .filter((r) => !own || r.health?.message !== own)
    .map((r) => `${r.kind}/${r.name} ${r.health?.status}${r.health?.message ? `: ${r.health.message}` : ""}`);
  return [own, ...resources].filter(Boolean).join("; ") || "no message from Argo CD";
}

/**
 * Follows one Argo CD application until it has synced a revision that contains the pushed commit (interfaces.md
 * A4): refresh right after the push, start the sync when the app has no automated policy, then read the app until
 * it is Synced and Healthy (pass), Degraded or failed (fail), or the deadline passes.
 */
export class ArgoCdSyncWatcher implements SyncWatcher {
  /**
   * The newest version of each application some waiting deployment saw (from the stream, the schedule or a
   * read), and when, while deployments wait for it; with the number of them. A deployment's own read, the safety
   * net between frames, uses a version younger than its interval instead of asking again, and reads at once are
   * shared: 10,000 deployments waiting for one application read it once per interval, not 10,000 times.
   */
  private readonly seen = new Map<string, { app?: Application; at: number; waiting: number }>();
  /**
   * Reads of applications on their way, shared by the deployments that ask while one is (`shared`): the refreshing
   * read after a push, by application and commit, so that the deployments of one commit (a burst commits up to 50
   * together) ask Argo CD to refresh once; and the plain read, by application.
   */
  private readonly reads = new Map<string, Promise<Application>>();

  constructor(private readonly options: ArgoCdSyncWatcherOptions) {}

  async waitForSync(request: SyncRequest): Promise<SyncOutcome> {
    const { application, appNamespace } = request;
    const loop = new WaitLoop(request, `Argo CD application ${application}`, "Argo CD");
    const query = appNamespace ? { appNamespace } : {};
    const key = `${appNamespace ?? ""}/${application}`;
    const seen = this.seen.get(key) ?? { at: 0, waiting: 0 };
    seen.waiting++;
    this.seen.set(key, seen);
    const arrived = (app: Application) => {
      if (appNamespace && app.metadata?.namespace !== appNamespace) return;
      this.saw(key, app);
      news.push(app);
    };
    // Subscribed before the first read, so that no version the stream brings is missed.
    const news = new News<Application>();
    const unsubscribe = this.options.stream?.subscribe(application, arrived);
    const unregister = this.options.wakeUps?.register("argocd", appNamespace, application, () => news.poke());
    const unschedule = this.options.schedule?.subscribe(application, arrived);
    // follow() inline, not a call: thousands of deployments wait in here at once, each async frame costs memory
    try {
      const { client, stream, schedule } = this.options;
      const { signal, logger } = request;

      let app = await loop.call(() => abortable(this.refreshed(request, key, query), signal));
      loop.lastSeen = describe(app);
      // A manual application applies nothing until it is synced. "Synced" alone is no reason to skip that: with
      // ignoreDifferences the comparison can say Synced at the commit while the commit was never applied (the
      // lab's never-fooled trap 3). Only an operation that already synced (or is syncing) the commit is.
      if (!autoSyncs(app) && !(await this.operationCovers(app, request))) {
        app = await loop.call(() => client.sync(application, { revision: request.commit, ...query }, signal));
        logger.info(
          { application, revision: request.commit },
          "started an Argo CD sync (the application has no automated sync policy)",
        );
      }
      for (;;) {
        const verdict = await this.verdict(app, request);
        if (verdict) return verdict;
        loop.lastSeen = describe(app);
        // The stream, or else the shared schedule, brings new versions; the own read is then only a safety net.
        const watching = stream?.connected === true || schedule?.delivering === true;
        const interval = watching
          ? (this.options.watchPollIntervalMs ?? this.options.pollIntervalMs)
          : this.options.pollIntervalMs;
        // Even with news waiting, pause(0) checks the deadline, so a flapping application cannot outlive it.
        const next = news.nextPause(interval);
        await loop.pause(next.ms, next.wake);
        app =
          news.take() ??
          (await loop.call(() =>
            // after a notification, a version seen before it will not do
            abortable(this.current(key, application, query, news.followingUp() ? 0 : interval), signal),
          ));
      }
    } finally {
      unsubscribe?.();
      unregister?.();
      unschedule?.();
      if (--seen.waiting === 0) this.seen.delete(key);
    }
  }

  /** Keeps `app` as the newest version of `key` while deployments wait for it. */
  private saw(key: string, app: Application): void {
    const seen = this.seen.get(key);
    if (!seen) return;
    seen.app = app;
    seen.at = Date.now();
  }

  /**
   * A version of the application no older than `maxAgeMs`: the newest one a waiting deployment saw, else one read
   * now, shared by the deployments that ask while it is on its way (without any one deployment's signal).
   */
  private current(
    key: string,
    application: string,
    query: { appNamespace?: string },
    maxAgeMs: number,
  ): Promise<Application> {
    const seen = this.seen.get(key);
    if (seen?.app && Date.now() - seen.at < maxAgeMs) return Promise.resolve(seen.app);
    return this.shared(`read ${key}`, key, () => this.options.client.getApplication(application, query));
  }

  /**
   * The read under `readKey` on its way, or `read()` started now and kept there until it ends. The shared read has
   * no deployment's signal (one deployment's abort must not fail the others): each waits for it with `abortable`,
   * and the client's request timeout bounds it. What it brings is the newest version seen of `appKey`.
   */
  private shared(readKey: string, appKey: string, read: () => Promise<Application>): Promise<Application> {
    let pending = this.reads.get(readKey);
    if (!pending) {
      pending = read()
        .then((app) => {
          this.saw(appKey, app);
          return app;
        })
        .finally(() => this.reads.delete(readKey));
      this.reads.set(readKey, pending);
    }
    return pending;
  }

  /** The application read with `refresh=normal`, shared by the deployments waiting for the same commit of it. */
  private refreshed(
    request: SyncRequest,
    appKey: string,
    query: { appNamespace?: string },
  ): Promise<Application> {
    return this.shared(`refresh ${appKey}@${request.commit}`, appKey, () =>
      this.options.client.getApplication(request.application, { ...query, refresh: "normal" }),
    );
  }

  /** Whether the last operation synced, or is syncing, a revision that contains the commit. */
  private async operationCovers(app: Application, request: SyncRequest): Promise<boolean> {
    const operation = app.status?.operationState;
    if (!operation || (operation.phase !== "Succeeded" && operation.phase !== "Running")) return false;
    const revisions = [...revisionsOf(operation.syncResult), ...revisionsOf(operation.operation?.sync)];
    return (await anyIncludes(request, revisions)) !== undefined;
  }

  /** The final state for this commit, or undefined while Argo CD is still on its way. */
  private async verdict(app: Application, request: SyncRequest): Promise<SyncOutcome | undefined> {
    const status = app.status;
    const operation = status?.operationState;
    const name = request.application;
    const commit = short(request.commit);
    const running = !!app.operation || operation?.phase === "Running" || operation?.phase === "Terminating";
    if (running) return undefined;

    if (operation && (operation.phase === "Failed" || operation.phase === "Error")) {
      const revision = await anyIncludes(request, [
        ...revisionsOf(operation.syncResult),
        ...revisionsOf(operation.operation?.sync),
      ]);
      if (revision) {
        return {
          kind: "sync-failed",
          revision,
          message: `Argo CD could not sync application ${name} to commit ${commit}${partOf(revision, request.commit)}: ${operation.message ?? operation.phase}`,
        };
      }
    }
    const synced =
      status?.sync?.status === "Synced" ? await anyIncludes(request, revisionsOf(status.sync)) : undefined;
    if (!synced) return undefined;
    const health = status?.health?.status;
    if (health === "Degraded") {
      return {
        kind: "degraded",
        revision: synced,
        message: `Argo CD synced application ${name} to commit ${commit}${partOf(synced, request.commit)} but it is Degraded: ${unhealthyDetails(app)}`,
      };
    }
    if (health !== "Healthy") return undefined;
    return {
      kind: "healthy",
      revision: synced,
      message: `Argo CD synced application ${name} to commit ${commit}${partOf(synced, request.commit)}; it is Synced and Healthy`,
    };
  }
}
