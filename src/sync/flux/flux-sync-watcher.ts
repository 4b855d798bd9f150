import { TerminalError } from "../../shared/errors.js";
import type { SyncOutcome, SyncRequest, SyncTarget, SyncWatcher } from "../sync-watcher.js";
import { News } from "../news.js";
import { WaitLoop } from "../wait-loop.js";
import type { WakeUps } from "../wake-ups.js";
import { isSourceKind, type FluxClient } from "./flux-client.js";
import { condition, sourceSchema, type FluxSource, type FluxSourceRef } from "./flux-objects.js";
import type { FluxReceiver } from "./flux-receiver.js";
import type { FluxWatch } from "./flux-watch.js";
import { describeCondition, type FollowedKind } from "./followed-kind.js";
import { helmReleaseRules } from "./helm-release-rules.js";
import { kustomizationRules } from "./kustomization-rules.js";

export interface FluxSyncWatcherOptions {
  client: FluxClient;
  /** How often the object is read while waiting (while the watch is down, or without one). */
  pollIntervalMs: number;
  /** The cluster's shared watch: each version of the object it brings is judged at once. */
  watch?: FluxWatch;
  /** How often the object is still read while the watch is up: a safety net only. */
  watchPollIntervalMs?: number;
  /** Flux notifications received by the webhook: each makes the object be read at once. */
  wakeUps?: WakeUps;
  /** Called after the push instead of the `requestedAt` patches, when the cluster has one configured. */
  receiver?: FluxReceiver;
}

/** The object a deployment follows: its rules, where it is, and how messages name it. */
interface Followed {
  rules: FollowedKind<unknown>;
  namespace: string;
  name: string;
  subject: string;
}

/**
 * The kinds of Flux object a deployment can follow, by `deploy.kind`. (FollowedKind's methods take the parsed
 * object, which their own schema made, so each entry is also a FollowedKind<unknown>.)
 */
const FOLLOWED_KINDS: Record<"Kustomization" | "HelmRelease", FollowedKind<unknown>> = {
  Kustomization: kustomizationRules,
  HelmRelease: helmReleaseRules,
};

/**
 * Follows one Flux object (a Kustomization or a HelmRelease, see FOLLOWED_KINDS) until it has applied a revision that
 * contains the pushed commit: asks the source and then the object to reconcile now, then judges every version of
 * the object the watch brings, or that a read returns, until its rules say done, failed, or the deadline passes.
 */
export class FluxSyncWatcher implements SyncWatcher {
  constructor(private readonly options: FluxSyncWatcherOptions) {}

  /**
   * Before the commit: the object must exist and be able to show a commit (FollowedKind.check). It also opens the
   * watch, so that the wait after the push can start from its cache.
   */
  async check(target: SyncTarget): Promise<void> {
    const followed = this.followed(target);
    const { rules, namespace, name, subject } = followed;
    const unsubscribe = this.options.watch?.subscribe(rules.kind, namespace, name, () => {});
    try {
      const loop = new WaitLoop(target, subject, "Flux");
      rules.check(await this.current(loop, followed, { cache: true }), subject);
    } finally {
      unsubscribe?.();
    }
  }

  async waitForSync(request: SyncRequest): Promise<SyncOutcome> {
    const { rules, namespace, name, subject } = this.followed(request);
    const loop = new WaitLoop(request, subject, "Flux");

    // Subscribed before the first read, so that no version the watch brings is missed.
    const news = new News<unknown>();
    const unsubscribe = this.options.watch?.subscribe(rules.kind, namespace, name, (object) =>
      news.push(object),
    );
    const unregister = this.options.wakeUps?.register("flux", namespace, name, () => news.poke());
    try {
      return await this.follow({ request, loop, rules, namespace, name, subject, news });
    } finally {
      unsubscribe?.();
      unregister?.();
    }
  }

  private followed(target: SyncTarget): Followed {
    const rules = FOLLOWED_KINDS[target.kind ?? "Kustomization"];
    const namespace = target.appNamespace ?? "flux-system";
    const name = target.application;
    return { rules, namespace, name, subject: `Flux ${rules.kind} ${namespace}/${name}` };
  }

  /**
   * The object, parsed: the version the watch brought (`pushed`), else (with `cache`) the watch's cache, else a
   * read. In the wait loop the cache holds nothing new: its versions came as `pushed`, and the read is the safety net.
   */
  private async current(
    loop: WaitLoop,
    followed: Followed,
    from: { pushed?: unknown; cache: boolean },
  ): Promise<unknown> {
    const { client, watch } = this.options;
    const { rules, namespace, name, subject } = followed;
    const body =
      from.pushed ??
      (from.cache ? watch?.cached(rules.kind, namespace, name) : undefined) ??
      (await loop.call(() => client.read(rules.kind, namespace, name)));
    const parsed = rules.schema.safeParse(body);
    if (parsed.success) return parsed.data;
    throw new TerminalError(
      `${subject} has a shape this service does not understand: ${parsed.error.issues[0]?.message ?? "?"}`,
    );
  }

  private async follow(
    wait: Followed & { request: SyncRequest; loop: WaitLoop; news: News<unknown> },
  ): Promise<SyncOutcome> {
    const { request, loop, rules, namespace, subject, news } = wait;
    const { watch } = this.options;

    let current = await this.current(loop, wait, { cache: true });
    // Checked before the commit too (check()); the object may have changed since.
    rules.check(current, subject);
    const sourceRef = rules.source(current);
    const source = this.sourceReader(loop, sourceRef, namespace);
    await this.requestReconcile(wait, sourceRef);
    for (;;) {
      const verdict = await rules.verdict(current, request, subject, source.read);
      if (verdict) return verdict;
      loop.lastSeen = [rules.describe(current), source.describe()].filter(Boolean).join(", ");
      const watching = watch?.connected(rules.kind, namespace) === true;
      const interval = watching
        ? (this.options.watchPollIntervalMs ?? this.options.pollIntervalMs)
        : this.options.pollIntervalMs;
      // Even with news waiting, pause(0) checks the deadline, so a flapping object cannot outlive it.
      const next = news.nextPause(interval);
      await loop.pause(next.ms, next.wake);
      current = await this.current(loop, wait, { pushed: news.take(), cache: false });
    }
  }

  /**
   * Asks Flux to look at git now: through the configured Receiver, or as `flux reconcile --with-source` does, with
   * a `requestedAt` patch of the source (so that it fetches the commit; its new artifact wakes the object anyway)
   * and then of the object.
   */
  private async requestReconcile(
    wait: Followed & { request: SyncRequest; loop: WaitLoop },
    sourceRef: FluxSourceRef | undefined,
  ): Promise<void> {
    const { request, loop, rules, namespace, name } = wait;
    const { client, receiver } = this.options;
    if (receiver) {
      await loop.call(() =>
        receiver.notify(request.commit, `${rules.kind}/${namespace}/${name}`, request.signal),
      );
      return;
    }
    if (sourceRef && isSourceKind(sourceRef.kind)) {
      const sourceKind = sourceRef.kind;
      await loop.call(() =>
        client.requestReconcile(sourceKind, sourceRef.namespace ?? namespace, sourceRef.name),
      );
    }
    await loop.call(() => client.requestReconcile(rules.kind, namespace, name));
  }

  /**
   * The object's source, read only when a verdict needs it (a failure reported before any revision was attempted)
   * or taken from the watch when it has it; its last known state goes into the timeout message.
   */
  private sourceReader(loop: WaitLoop, ref: FluxSourceRef | undefined, namespace: string) {
    const { client, watch } = this.options;
    let known: FluxSource | undefined;
    const fromWatch = () => {
      if (!ref || !isSourceKind(ref.kind)) return undefined;
      const parsed = sourceSchema.safeParse(watch?.cached(ref.kind, ref.namespace ?? namespace, ref.name));
      return parsed.success ? parsed.data : undefined;
    };
    return {
      read: async () => {
        if (!ref) return undefined;
        known =
          fromWatch() ??
          (await loop.call(() => client.source(ref.kind, ref.namespace ?? namespace, ref.name)));
        return known;
      },
      describe: () => {
        const source = fromWatch() ?? known;
        if (!ref || !source) return undefined;
        return `source ${ref.kind}/${ref.name} at ${source.status?.artifact?.revision ?? "no artifact"}, Ready ${describeCondition(condition(source, "Ready"))}`;
      },
    };
  }
}
