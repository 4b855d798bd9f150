import type { EditResult } from "./editors/editors.js";

/** A GitOps repository and branch as the service writes to it. */
export interface RepositoryRef {
  name: string;
  url: string;
  branch: string;
  auth?: TokenAuth | SshAuth;
  /** Every commit is signed with this key. */
  signing?: { format: "ssh" | "openpgp"; key: string };
}

/** A token that changes over time (a GitHub App's installation token): asked for before each git operation. */
export type TokenSource = (signal?: AbortSignal) => Promise<string>;

/** HTTPS: a token, sent as `Authorization: Basic base64(username:token)`, or as `Bearer <token>`. */
export interface TokenAuth {
  username: string;
  token: string | TokenSource;
  /** Default `basic`. */
  scheme?: "basic" | "bearer";
}

/** SSH (`ssh://` and `git@host:path` URLs): a private key, and the host keys to trust. */
export interface SshAuth {
  ssh: {
    /** The private key file's text, without a passphrase. */
    privateKey: string;
    /** known_hosts lines; absent only when `strictHostKeyChecking` is off. */
    knownHosts?: string;
    strictHostKeyChecking: boolean;
  };
}

/** One file of a change: its path and the pure edit of its text. */
export interface FileEdit {
  /** Path of the file inside the repository (relative, checked not to leave the repository). */
  file: string;
  /** Pure edit of the file's text, applied again on a newer head after a push race. */
  edit(text: string): EditResult;
}

/** A file a change altered, with the changes as the editors describe them (`image.tag: 1 -> 2`). */
export interface ChangedFile {
  file: string;
  changes: string[];
}

export interface ChangeRequest {
  repository: RepositoryRef;
  /** The files of one deployment: all of them go into the same commit, or none when one of them cannot be edited. */
  files: FileEdit[];
  /** The commit message for the files the edits changed (only those, in the order of `files`). */
  message(changed: ChangedFile[]): string;
  /**
   * The message of one commit holding this change and others queued for the same repository and branch, made from
   * their own messages (in order). Without it the change is committed alone.
   */
  groupMessage?(messages: string[]): string;
  /**
   * Push the commit to this branch instead of the repository's branch, replacing what the branch held (a pull
   * request's branch, which belongs to the service). The commit is still made on the repository's branch head.
   */
  pushTo?: string;
  /** Fetch, edit and diff, but commit and push nothing: the outcome carries the diff. */
  dryRun?: boolean;
  signal?: AbortSignal;
}

export interface ChangeOutcome {
  /** The commit that holds the change: the pushed commit, or the head that already had the value. */
  commit: string;
  /** False when the files already held the requested values and nothing was committed. */
  committed: boolean;
  /** The files the change altered, in the order of the request; empty when nothing changed. */
  files: ChangedFile[];
  /** Dry run only: the unified diff (`git diff`) the edits made; "" when they changed nothing. */
  diff?: string;
}

/** The git side of a deployment: the repository is the deployment contract. */
export interface GitopsRepo {
  /**
   * Applies the change on the branch head, commits and pushes; a push race re-applies it on the new head. Changes
   * that queue up for the same repository and branch while a commit is made go into the next commit together.
   */
  applyChange(request: ChangeRequest): Promise<ChangeOutcome>;
  /** True when `revision` is `commit` or a descendant of it, so that deploying `revision` deploys `commit`. */
  includes(repository: RepositoryRef, commit: string, revision: string): Promise<boolean>;
  /**
   * The newest commit on `branch` (the repository's branch when absent) whose message has the trailer
   * `Keptn-Triggered-Id: <triggeredId>`: the commit a deployment made before the service restarted. Undefined when
   * there is none (or the branch does not exist).
   */
  findDeploymentCommit(
    repository: RepositoryRef,
    triggeredId: string,
    branch?: string,
  ): Promise<string | undefined>;
}
