import { createHash } from "node:crypto";
import { access, chmod, mkdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { simpleGit, type SimpleGit } from "simple-git";
import { RetryableError, TerminalError, errorMessage } from "../shared/errors.js";
import { KeyedMutex } from "../shared/keyed-mutex.js";
import { SigningKeys } from "./commit-signing.js";
import type { Logger } from "../shared/logger.js";
import { backoffDelay, withRetry, type RetryPolicy } from "../shared/retry.js";
import type { SecretRegistry } from "../shared/secrets.js";
import type {
  ChangedFile,
  ChangeOutcome,
  ChangeRequest,
  GitopsRepo,
  RepositoryRef,
  SshAuth,
} from "./gitops-repo.js";
import { resolveInsideRepo } from "./repo-path.js";

export interface SimpleGitGitopsRepoOptions {
  cacheDir: string;
  author: { name: string; email: string };
  /** Push attempts when the branch moved between fetch and push. */
  pushAttempts: number;
  /** Most changes queued for one repository and branch that go into one commit; 1 commits each alone. Default 50. */
  maxChangesPerCommit?: number;
  commandTimeoutMs: number;
  /** PATH, locale and the like for the git processes (see config/process-env.ts). */
  baseEnv: Record<string, string>;
  logger: Logger;
  secrets: SecretRegistry;
  /** Holds a private directory per SSH repository (key and known_hosts); `<cacheDir>/.ssh` by default. */
  sshDir?: string;
}

/** Network trouble: fetch and clone are retried this way before the deployment gives up. */
const NETWORK_RETRY: RetryPolicy = { attempts: 4, baseDelayMs: 500, maxDelayMs: 5_000 };
const PUSH_RACE_BACKOFF: RetryPolicy = { attempts: 0, baseDelayMs: 100, maxDelayMs: 2_000 };
const DEFAULT_MAX_CHANGES_PER_COMMIT = 50;

type GitFailure =
  "auth" | "host-key" | "not-found" | "protected-branch" | "hook-declined" | "push-race" | "other";

/** Reads git's stderr: what went wrong decides whether to retry, re-apply, or answer at once. */
export function classifyGitFailure(message: string): GitFailure {
  // OpenSSH: "No ED25519 host key is known for ...", "REMOTE HOST IDENTIFICATION HAS CHANGED!", then this line.
  if (/Host key verification failed/i.test(message)) return "host-key";
  if (
    /Authentication failed|could not read (Username|Password)|returned error: 40[13]|HTTP 40[13]|Permission denied \(publickey|terminal prompts disabled/i.test(
      message,
    )
  )
    return "auth";
  if (
    /Repository not found|repository '[^']*' not found|does not appear to be a git repository|returned error: 404|couldn't find remote ref|Remote branch .* not found/i.test(
      message,
    )
  )
    return "not-found";
  // GitLab: "remote: GitLab: You are not allowed to push code to protected branches on this project." GitHub:
  // "remote: error: GH006: Protected branch update failed", "GH013: Repository rule violations found". Both then
  // print "[remote rejected] ... (pre-receive hook declined)" or "(protected branch hook declined)": not a race.
  if (/not allowed to push code to protected branches|protected branch|GH006|GH013/i.test(message))
    return "protected-branch";
  // A server hook said no ("(pre-receive hook declined)", "(hook declined)"): pushing again changes nothing.
  if (/hook declined/i.test(message)) return "hook-declined";
  if (
    /\[rejected\]|non-fast-forward|fetch first|Updates were rejected|cannot lock ref|failed to update ref|stale info|\[remote rejected\]/i.test(
      message,
    )
  )
    return "push-race";
  return "other";
}

/** What the server said through git ("remote: ..." lines, e.g. a hook's reason), or else git's own error lines. */
function remoteSaid(message: string): string {
  const lines = message
    .split("\n")
    .map((l) => /^remote:\s*(.*)$/.exec(l.trim())?.[1]?.trim() ?? "")
    .filter(Boolean);
  return lines.length > 0 ? lines.join(" ") : gitSaid(message);
}

/** What git said that matters: its fatal/error lines, without progress lines that name local paths. */
function gitSaid(message: string): string {
  const lines = message
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("Cloning into"));
  const errors = lines.filter((l) => /^(fatal|error|ssh):/.test(l));
  return (errors.length > 0 ? errors : lines.slice(-2)).join(" ");
}

/** The URL without any user info (an SSH URL keeps its user name: the key must be authorized for it), for messages. */
function displayUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.protocol !== "ssh:") parsed.username = "";
    parsed.password = "";
    return parsed.toString();
  } catch {
    return url;
  }
}

/** How many `includes` answers are remembered before the memory starts over. */
const ANCESTRY_MEMORY = 10_000;

/**
 * The GitOps repository through the real `git` CLI (simple-git). One clone per repository and branch lives in the
 * cache directory and is reused: fetch + hard reset before each commit. The changes that queue up for a repository
 * and branch while a commit is made go into the next commit together (readme.md, "Bursts"). Credentials reach git
 * only through the environment of each git process (`GIT_CONFIG_*` → `http.<url>.extraHeader`), so they are never
 * written to `.git/config`, a command line, or a remote URL.
 */
export class SimpleGitGitopsRepo implements GitopsRepo {
  private readonly mutex = new KeyedMutex();
  /**
   * Answers of `includes` for revisions the clone has: ancestry never changes, and the watchers ask again on
   * every poll and stream frame, which would otherwise run git under the repository's lock each time.
   */
  private readonly ancestry = new Map<string, boolean>();
  /** Changes waiting for their repository and branch, by `key()`: the next turn of the lock commits them together. */
  private readonly queues = new Map<string, Queued[]>();
  /** Keys with a turn of the lock queued that has not yet taken its group (`scheduleTurn`). */
  private readonly turnsWaiting = new Set<string>();
  /** The `GIT_SSH_COMMAND` of each SSH repository, by name: its key files are written once, on first use. */
  private readonly sshCommands = new Map<string, Promise<string>>();

  /** The signing keys of the repositories that sign their commits; written once, on first use. */
  private readonly signingKeys: SigningKeys;

  constructor(private readonly options: SimpleGitGitopsRepoOptions) {
    this.signingKeys = new SigningKeys(join(options.cacheDir, ".signing"), options.baseEnv);
  }

  /** Removes the key files of the SSH repositories. Git operations after this write them again. */
  async close(): Promise<void> {
    const written = [...this.sshCommands].map(([name, command]) =>
      command.catch(() => undefined).then(() => name),
    );
    this.sshCommands.clear();
    for (const name of await Promise.all(written)) {
      await rm(join(this.sshRoot(), name), { recursive: true, force: true });
    }
    await rmdir(this.sshRoot()).catch(() => undefined); // only when empty
    await this.signingKeys.close();
  }

  async applyChange(request: ChangeRequest): Promise<ChangeOutcome> {
    const key = this.key(request.repository);
    if (request.dryRun) return this.mutex.run(key, () => this.preview(request));
    const queued = new Promise<ChangeOutcome>((resolve, reject) => {
      const queue = this.queues.get(key) ?? [];
      queue.push({ request, resolve, reject });
      this.queues.set(key, queue);
    });
    this.scheduleTurn(key);
    return queued;
  }

  /**
   * Queues a turn of the repository's lock, unless one is queued that has not yet taken its group. A turn takes
   * the changes queued by then (up to the limit) into one commit, and queues the next turn when changes are left,
   * so that 10,000 waiting changes wait for one turn, not 10,000. commitGroup answers every change it took.
   */
  private scheduleTurn(key: string): void {
    if (this.turnsWaiting.has(key)) return;
    this.turnsWaiting.add(key);
    void this.mutex.run(key, async () => {
      this.turnsWaiting.delete(key);
      const group = this.takeGroup(key);
      if (this.queues.has(key)) this.scheduleTurn(key);
      if (group.length > 0) await this.commitGroup(group);
    });
  }

  /**
   * The changes at the head of the queue that go into one commit: the first, and the ones after it that can be
   * described together (`groupMessage`), up to `maxChangesPerCommit`. A change whose deployment was cancelled
   * while it waited is answered here and left out.
   */
  private takeGroup(key: string): Queued[] {
    const queue = this.queues.get(key) ?? [];
    const limit = this.options.maxChangesPerCommit ?? DEFAULT_MAX_CHANGES_PER_COMMIT;
    const group: Queued[] = [];
    while (queue.length > 0 && group.length < limit) {
      const next = queue[0]!;
      if (group.length > 0 && !groupsWith(group[0]!.request, next.request)) break;
      queue.shift();
      if (next.request.signal?.aborted) next.reject(next.request.signal.reason);
      else group.push(next);
    }
    if (queue.length === 0) this.queues.delete(key);
    return group;
  }

  /**
   * Applies the changes of a group in order on the branch head, commits what changed in one commit and pushes
   * it. A change that cannot be applied (missing file, YAML that does not parse, a key that is not there) fails
   * alone; the others go on. A push race fetches and applies the whole group again on the new head. Every change
   * that is still in the group then gets the one commit; git errors fail the whole group.
   */
  private async commitGroup(members: Queued[]): Promise<void> {
    const { repository } = members[0]!.request;
    let group = members;
    try {
      const signal = whenAllAborted(group.map((m) => m.request.signal));
      const dir = await this.ensureClone(repository, signal);
      const git = await this.git(repository, dir, signal);
      for (let attempt = 1; ; attempt++) {
        await this.syncToRemote(git, repository, signal);
        const head = (await git.revparse(["HEAD"])).trim();
        const applied: Array<{ member: Queued; files: ChangedFile[] }> = [];
        for (const member of group) {
          if (member.request.signal?.aborted) {
            member.reject(member.request.signal.reason);
            continue;
          }
          try {
            applied.push({ member, files: await this.edit(dir, member.request) });
          } catch (error) {
            member.reject(error);
          }
        }
        group = applied.map((a) => a.member);
        const changed = applied.filter((a) => a.files.length > 0);
        if (changed.length === 0) {
          if (applied.length > 0) {
            this.options.logger.info(
              {
                repository: repository.name,
                commit: head,
                files: unique(group.flatMap((m) => m.request.files.map((f) => f.file))),
              },
              "file already holds the requested value; nothing to commit",
            );
          }
          for (const member of group) member.resolve({ commit: head, committed: false, files: [] });
          return;
        }
        const files = unique(changed.flatMap((a) => a.files.map((f) => f.file)));
        await git.raw(["add", "--verbose", "--", ...files]);
        const messages = changed.map((a) => a.member.request.message(a.files));
        const message =
          messages.length === 1 ? messages[0]! : changed[0]!.member.request.groupMessage!(messages);
        await git.commit(message, undefined, { "--no-verify": null });
        const commit = (await git.revparse(["HEAD"])).trim();
        // A group shares its `pushTo` (groupsWith): a pull request's branch is replaced, never raced for.
        const pushTo = group[0]!.request.pushTo;
        try {
          await this.run(
            repository,
            "push",
            () =>
              pushTo
                ? git.push("origin", `HEAD:refs/heads/${pushTo}`, ["--force"])
                : git.push("origin", `HEAD:refs/heads/${repository.branch}`),
            signal,
          );
          this.options.logger.info(
            {
              repository: repository.name,
              branch: pushTo ?? repository.branch,
              commit,
              files,
              changes: changed.length,
              attempt,
            },
            "pushed commit",
          );
          // A change that found its values already there (set by the head, or by an earlier change of the group)
          // is deployed by the same commit.
          for (const { member, files: changedFiles } of applied) {
            member.resolve({ commit, committed: changedFiles.length > 0, files: changedFiles });
          }
          return;
        } catch (error) {
          if (!(error instanceof PushRaceError)) throw error;
          if (attempt >= this.options.pushAttempts) {
            throw new RetryableError(
              `the push to ${displayUrl(repository.url)} was rejected ${attempt} times because branch ${repository.branch} kept moving; trigger the deployment again`,
              { cause: error },
            );
          }
          this.options.logger.info(
            { repository: repository.name, attempt, changes: changed.length },
            "push rejected because the branch moved; re-applying on the new head",
          );
          await sleep(backoffDelay(PUSH_RACE_BACKOFF, attempt), undefined, { signal });
        }
      }
    } catch (error) {
      for (const member of group) member.reject(error);
    }
  }

  /** A dry run: fetch, edit and diff against the head, then put the file back. Nothing is committed. */
  private async preview(request: ChangeRequest): Promise<ChangeOutcome> {
    const { repository, signal } = request;
    const dir = await this.ensureClone(repository, signal);
    const git = await this.git(repository, dir, signal);
    await this.syncToRemote(git, repository, signal);
    const head = (await git.revparse(["HEAD"])).trim();
    const files = await this.edit(dir, request);
    if (files.length === 0) return { commit: head, committed: false, files, diff: "" };
    const paths = files.map((f) => f.file);
    const diff = await git.raw(["diff", "--no-color", "--no-ext-diff", "--", ...paths]);
    await git.reset(["--hard", "HEAD"]);
    this.options.logger.info(
      { repository: repository.name, commit: head, files: paths },
      "dry run: the change was made and diffed, not committed",
    );
    return { commit: head, committed: false, files, diff };
  }

  /**
   * Reads the files of a change from the clone and edits them all in memory; only when every edit succeeded are the
   * changed files written back, so a change whose second file is missing leaves its first file untouched too.
   */
  private async edit(dir: string, request: ChangeRequest): Promise<ChangedFile[]> {
    const { repository } = request;
    const edited: Array<{ path: string; file: string; text: string; changes: string[] }> = [];
    for (const { file, edit } of request.files) {
      const path = await resolveInsideRepo(dir, file);
      // A file named twice is edited on top of its first edit.
      const earlier = edited.findLast((e) => e.path === path);
      const text =
        earlier?.text ??
        (await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
          if (error.code === "ENOENT" || error.code === "EISDIR") {
            throw new TerminalError(
              `${file} does not exist on branch ${repository.branch} of ${displayUrl(repository.url)}; create it or fix the target's file template`,
            );
          }
          throw error;
        }));
      const result = edit(text);
      edited.push({ path, file, text: result.text, changes: result.changes });
    }
    const changed = edited.filter((e) => e.changes.length > 0);
    for (const path of unique(changed.map((e) => e.path))) {
      await writeFile(path, edited.findLast((e) => e.path === path)!.text);
    }
    return changed.map(({ file, changes }) => ({ file, changes }));
  }

  async includes(repository: RepositoryRef, commit: string, revision: string): Promise<boolean> {
    if (revision.toLowerCase() === commit.toLowerCase()) return true;
    if (!/^[0-9a-f]{7,64}$/i.test(revision)) return false;
    const key = `${this.key(repository)} ${commit.toLowerCase()} ${revision.toLowerCase()}`;
    const known = this.ancestry.get(key);
    if (known !== undefined) return known;
    const answer = await this.mutex.run(this.key(repository), async () => {
      const dir = await this.ensureClone(repository);
      const git = await this.git(repository, dir);
      const present = async () =>
        git.raw(["cat-file", "-t", `${revision}^{commit}`]).then(
          () => true,
          () => false,
        );
      if (!(await present())) {
        await this.run(repository, "fetch", () => git.fetch("origin", repository.branch, ["--verbose"]));
        // Not on the branch (yet): not remembered, a later fetch may bring it.
        if (!(await present())) return undefined;
      }
      const base = (await git.raw(["merge-base", commit, revision]).catch(() => "")).trim();
      return base.toLowerCase() === commit.toLowerCase();
    });
    if (answer === undefined) return false;
    if (this.ancestry.size >= ANCESTRY_MEMORY) this.ancestry.clear();
    this.ancestry.set(key, answer);
    return answer;
  }

  async findDeploymentCommit(
    repository: RepositoryRef,
    triggeredId: string,
    branch = repository.branch,
  ): Promise<string | undefined> {
    return this.mutex.run(this.key(repository), async () => {
      const dir = await this.ensureClone(repository);
      const git = await this.git(repository, dir);
      const ref = `refs/keptn-gitops/search/${branch}`;
      try {
        await this.run(repository, "fetch", () =>
          git.fetch("origin", `+refs/heads/${branch}:${ref}`, ["--verbose"]),
        );
      } catch (error) {
        if (error instanceof TerminalError && /does not exist/.test(error.message)) return undefined;
        throw error;
      }
      // The last 500 commits: a deployment's own commit is recent (it was made before the restart).
      const out = await git.raw([
        "log",
        "--format=%H %(trailers:key=Keptn-Triggered-Id,valueonly,separator=%x2C)",
        "-n",
        "500",
        ref,
        "--",
      ]);
      for (const line of out.split("\n")) {
        const [sha, ids = ""] = line.trim().split(" ");
        if (sha && ids.split(",").some((id) => id.trim() === triggeredId)) return sha;
      }
      return undefined;
    });
  }

  private key(repository: RepositoryRef): string {
    return `${repository.url}#${repository.branch}`;
  }

  private cloneDir(repository: RepositoryRef): string {
    const hash = createHash("sha256").update(this.key(repository)).digest("hex").slice(0, 12);
    return join(this.options.cacheDir, `${repository.name}-${hash}`);
  }

  private async ensureClone(repository: RepositoryRef, signal?: AbortSignal): Promise<string> {
    const dir = this.cloneDir(repository);
    const present = await access(join(dir, ".git", "HEAD")).then(
      () => true,
      () => false,
    );
    // A clone left broken (disk full, killed mid-clone) is cloned again rather than reported as a missing repo.
    const usable =
      present &&
      (await (await this.git(repository, dir, signal)).revparse(["--is-inside-work-tree"]).then(
        () => true,
        () => false,
      ));
    if (usable) return dir;
    await rm(dir, { recursive: true, force: true });
    await mkdir(this.options.cacheDir, { recursive: true });
    const git = await this.git(repository, this.options.cacheDir, signal);
    await this.run(
      repository,
      "clone",
      () => git.clone(repository.url, dir, ["--no-tags", "--single-branch", "--branch", repository.branch]),
      signal,
    );
    this.options.logger.info(
      { repository: repository.name, url: displayUrl(repository.url) },
      "cloned repository into the cache",
    );
    return dir;
  }

  /**
   * Fetches and resets the clone to the remote branch. No `git clean`: edits touch tracked files only, a reset
   * restores them all, and `git add` names the one file, so leftovers can never reach a commit.
   *
   * The git commands here all print something (`--verbose`, `cat-file -t`): simple-git waits 50 ms after any
   * command that prints nothing, which cost about 100 ms a deployment (docs/benchmarks.md).
   */
  private async syncToRemote(git: SimpleGit, repository: RepositoryRef, signal?: AbortSignal): Promise<void> {
    await this.run(repository, "fetch", () => git.fetch("origin", repository.branch, ["--verbose"]), signal);
    await git.reset(["--hard", `origin/${repository.branch}`]);
  }

  /** Runs a git operation that talks to the remote: retries network trouble, explains auth and missing repos. */
  private async run<T>(
    repository: RepositoryRef,
    what: string,
    operation: () => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    return withRetry(
      NETWORK_RETRY,
      async () => {
        try {
          return await operation();
        } catch (error) {
          const message = this.options.secrets.redact(errorMessage(error));
          const url = displayUrl(repository.url);
          const ssh = repository.auth && "ssh" in repository.auth;
          switch (classifyGitFailure(message)) {
            case "auth":
              throw new TerminalError(
                ssh
                  ? `git ${what} of ${url} was refused: the server did not accept the SSH key; check the key of repository "${repository.name}" (repositories[].auth.ssh.privateKey): its public key must be authorized for the user of the URL`
                  : `git ${what} of ${url} was refused: the credentials were rejected; check the ${repository.auth && "token" in repository.auth && typeof repository.auth.token !== "string" ? `GitHub App of repository "${repository.name}" (repositories[].auth.githubApp: installed on the repository, with Contents read and write)` : `token of repository "${repository.name}" (repositories[].auth.token)`}`,
              );
            case "host-key":
              throw new TerminalError(
                `git ${what} of ${url} was refused: the server's SSH host key is not in known_hosts or has changed; check knownHosts of repository "${repository.name}" (repositories[].auth.ssh.knownHosts, the output of ssh-keyscan)`,
              );
            case "not-found":
              throw new TerminalError(
                `git ${what} of ${url} failed: the repository or branch ${repository.branch} does not exist; check repository "${repository.name}"`,
              );
            case "protected-branch":
              throw new TerminalError(
                `git ${what} to ${url} was refused: branch ${repository.branch} is protected (the server said: ${remoteSaid(message)}); let the service's user push to it, or deploy through pull requests`,
              );
            case "hook-declined":
              throw new TerminalError(
                `git ${what} to ${url} was refused by a hook on the server, which said: ${remoteSaid(message)}`,
              );
            case "push-race":
              throw new PushRaceError(message);
            case "other":
              throw new RetryableError(`git ${what} of ${url} failed: ${gitSaid(message)}`);
          }
        }
      },
      signal,
    );
  }

  private async git(repository: RepositoryRef, baseDir: string, signal?: AbortSignal): Promise<SimpleGit> {
    const config: Array<[string, string]> = [
      ["user.name", this.options.author.name],
      ["user.email", this.options.author.email],
      ["credential.helper", ""],
      ["core.hooksPath", "/dev/null"],
    ];
    const auth = repository.auth;
    if (auth && "token" in auth) {
      const token = typeof auth.token === "string" ? auth.token : await auth.token(signal);
      const header =
        auth.scheme === "bearer"
          ? `Bearer ${token}`
          : `Basic ${Buffer.from(`${auth.username}:${token}`).toString("base64")}`;
      config.push([`http.${repository.url}.extraHeader`, `Authorization: ${header}`]);
    }
    const env: Record<string, string> = {
      ...this.options.baseEnv,
      GIT_TERMINAL_PROMPT: "0",
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_CONFIG_COUNT: String(config.length),
    };
    if (auth && "ssh" in auth) env["GIT_SSH_COMMAND"] = await this.sshCommand(repository.name, auth);
    if (repository.signing) {
      const signing = await this.signingKeys.setupFor(repository.name, repository.signing);
      config.push(...signing.config);
      Object.assign(env, signing.env);
      env["GIT_CONFIG_COUNT"] = String(config.length);
    }
    config.forEach(([key, value], i) => {
      env[`GIT_CONFIG_KEY_${i}`] = key;
      env[`GIT_CONFIG_VALUE_${i}`] = value;
    });
    return simpleGit({
      baseDir,
      timeout: { block: this.options.commandTimeoutMs },
      ...(signal ? { abort: signal } : {}),
      allowEnvironment: Object.keys(env).filter((key) => key.startsWith("GIT_")),
      // simple-git guards these against untrusted input; here the service sets every value itself, to keep
      // credentials out of argv and .git/config, to ignore the host's git config, and to switch helpers off.
      unsafe: {
        allowUnsafeConfigEnvCount: true,
        allowUnsafeConfigPaths: true,
        allowUnsafeCredentialHelper: true,
        allowUnsafeHooksPath: true,
        allowUnsafeSshCommand: true,
      },
    }).env(env);
  }

  private sshRoot(): string {
    return this.options.sshDir ?? join(this.options.cacheDir, ".ssh");
  }

  /**
   * The ssh command line for git (`GIT_SSH_COMMAND`): only the key file given, only the known_hosts file given,
   * no ~/.ssh/config, no agent, never a prompt. Key and known_hosts are written once per repository, mode 0600,
   * into a private directory (0700) outside the clone; the key itself is never on a command line.
   */
  private sshCommand(name: string, auth: SshAuth): Promise<string> {
    let command = this.sshCommands.get(name);
    if (!command) {
      command = this.writeSshFiles(name, auth);
      this.sshCommands.set(name, command);
      // A failed write (disk full) is tried again by the next git operation.
      command.catch(() => this.sshCommands.delete(name));
    }
    return command;
  }

  /** `<sshRoot>/<name>`, made anew: what a previous process left there (it may have been killed) goes first. */
  private async writeSshFiles(name: string, { ssh }: SshAuth): Promise<string> {
    const root = this.sshRoot();
    const dir = join(root, name);
    await mkdir(dirname(root), { recursive: true });
    await mkdir(root, { recursive: true, mode: 0o700 });
    await chmod(root, 0o700);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { mode: 0o700 });
    await chmod(dir, 0o700);
    const key = join(dir, "id");
    const knownHosts = join(dir, "known_hosts");
    // OpenSSH refuses a key file without its final newline; secrets are read trimmed.
    await writeFile(key, `${ssh.privateKey.trim()}\n`, { mode: 0o600, flag: "wx" });
    await writeFile(knownHosts, ssh.knownHosts ? `${ssh.knownHosts.trim()}\n` : "", {
      mode: 0o600,
      flag: "wx",
    });
    return [
      "ssh",
      "-F /dev/null",
      `-i ${shellQuote(key)}`,
      "-o IdentitiesOnly=yes",
      "-o IdentityAgent=none",
      `-o UserKnownHostsFile=${shellQuote(knownHosts)}`,
      "-o GlobalKnownHostsFile=/dev/null",
      `-o StrictHostKeyChecking=${ssh.strictHostKeyChecking ? "yes" : "no"}`,
      "-o BatchMode=yes",
      "-o LogLevel=ERROR",
    ].join(" ");
  }
}

/** Git runs GIT_SSH_COMMAND through the shell. */
function shellQuote(value: string): string {
  return `'${value.replaceAll("'", "'\\''")}'`;
}

/** A change waiting in the queue of its repository, with the settling of its `applyChange` promise. */
interface Queued {
  request: ChangeRequest;
  resolve(outcome: ChangeOutcome): void;
  reject(error: unknown): void;
}

const unique = (values: string[]) => [...new Set(values)];

/** Changes go into one commit when both can be described together and go to the same branch. */
function groupsWith(first: ChangeRequest, next: ChangeRequest): boolean {
  return Boolean(first.groupMessage && next.groupMessage) && first.pushTo === next.pushTo;
}

/**
 * Aborts when every one of `signals` has: a group's git commands go on while one deployment of the group still
 * waits for them. Undefined (never aborts) when one of them cannot be cancelled.
 */
function whenAllAborted(signals: Array<AbortSignal | undefined>): AbortSignal | undefined {
  const all = signals.filter((s): s is AbortSignal => s !== undefined);
  if (all.length < signals.length || all.length === 0) return undefined;
  if (all.length === 1) return all[0];
  const controller = new AbortController();
  const check = () => {
    if (!controller.signal.aborted && all.every((s) => s.aborted)) controller.abort(all[0]!.reason);
  };
  for (const s of all) s.addEventListener("abort", check, { once: true });
  check();
  return controller.signal;
}

class PushRaceError extends Error {
  override name = "PushRaceError";
}
