import type { EditResult } from "./editors/editors.js";

/** A GitOps repository and branch as the service writes to it. */
export interface RepositoryRef {
  name: string;
  url: string;
  branch: string;
  auth?: TokenAuth | SshAuth;
}

/** HTTPS: a token, sent as `Authorization: Basic base64(username:token)`. */
export interface TokenAuth {
  username: string;
  token: string;
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

export interface ChangeRequest {
  repository: RepositoryRef;
  /** Path of the file inside the repository (relative, checked not to leave the repository). */
  file: string;
  /** Pure edit of the file's text, applied again on a newer head after a push race. */
  edit(text: string): EditResult;
  /** The commit message for the changes the edit made. */
  message(changes: string[]): string;
  signal?: AbortSignal;
}

export interface ChangeOutcome {
  /** The commit that holds the change: the pushed commit, or the head that already had the value. */
  commit: string;
  /** False when the file already held the requested value and nothing was committed. */
  committed: boolean;
  changes: string[];
}

/** The git side of a deployment: the repository is the deployment contract. */
export interface GitopsRepo {
  /** Applies the change on the branch head, commits and pushes; a push race re-applies it on the new head. */
  applyChange(request: ChangeRequest): Promise<ChangeOutcome>;
  /** True when `revision` is `commit` or a descendant of it, so that deploying `revision` deploys `commit`. */
  includes(repository: RepositoryRef, commit: string, revision: string): Promise<boolean>;
}
