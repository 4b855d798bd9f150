import type { Logger } from "../shared/logger.js";

/** Where a deployment goes, known before there is a commit. */
export interface SyncTarget {
  /** The application (Argo CD) or object (Flux) that deploys the changed file. */
  application: string;
  appNamespace?: string;
  /** The object's kind, for a tool that deploys through several (Flux: Kustomization or HelmRelease). */
  kind?: "Kustomization" | "HelmRelease";
  /** Epoch milliseconds; past it the wait ends with a DeadlineExceededError naming what was last seen. */
  deadline: number;
  signal: AbortSignal;
  logger: Logger;
}

/** What a deployment waits for: the GitOps tool has applied (a descendant of) `commit` and the app is healthy. */
export interface SyncRequest extends SyncTarget {
  commit: string;
  /** True when the tool's revision contains `commit` (equal to it, or a descendant on the branch). */
  includes(revision: string): Promise<boolean>;
}

export type SyncOutcome =
  | { kind: "healthy"; revision: string; message: string }
  | { kind: "degraded"; revision: string; message: string }
  | { kind: "sync-failed"; revision: string; message: string };

/**
 * The port to a GitOps tool: Argo CD (applications through its API) and Flux (Kustomizations and HelmReleases
 * through the Kubernetes API) implement it, so a shipyard does not change when the tool does.
 */
export interface SyncWatcher {
  /**
   * Before the commit: throws a TerminalError when the target can never show a commit (it does not exist, it is
   * suspended, a HelmRelease chart that does not follow commits), so that nothing is committed for it.
   */
  check?(target: SyncTarget): Promise<void>;
  /** Asks the tool to look at git now, starts the sync if nobody else will, and follows it to a final state. */
  waitForSync(request: SyncRequest): Promise<SyncOutcome>;
}

/** The key of a watcher among all configured ones: a Flux cluster and an Argo CD server may share a name. */
export function watcherKey(tool: "argocd" | "flux", server: string): string {
  return `${tool}/${server}`;
}
