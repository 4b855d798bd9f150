import { GitCommandError, git } from "./gitops-fixture.js";

// Git plumbing on a bare repository, shared by the GitHub and GitLab simulators: merges are made the way a git
// host makes them, without a work tree (`git merge-tree --write-tree` + `commit-tree` + `update-ref`), so that
// whatever reads the repository afterwards (a GitOps controller, `git log`) sees a real merge commit.

/** Who a commit is attributed to (author or committer). */
export interface GitIdentity {
  name: string;
  email: string;
}

/** The branch moved between reading it and updating it: `update-ref` refused the compare-and-swap. */
export class RefMovedError extends Error {
  override readonly name = "RefMovedError";
}

/** One commit of `base..head`, oldest first. */
export interface BranchCommit {
  sha: string;
  subject: string;
  body: string;
}

export type MergeTreeResult = { clean: true; tree: string } | { clean: false };

export class BareRepo {
  constructor(readonly gitDir: string) {}

  /** Full SHA at the head of `branch`, or undefined when the branch does not exist. */
  async branchHead(branch: string): Promise<string | undefined> {
    try {
      const out = await this.run(["rev-parse", "--verify", "--quiet", `refs/heads/${branch}^{commit}`]);
      return out.trim() || undefined;
    } catch (error) {
      if (error instanceof GitCommandError && error.exitCode === 1) return undefined;
      throw error;
    }
  }

  /** True when `ancestor` is reachable from `descendant`. */
  async isAncestor(ancestor: string, descendant: string): Promise<boolean> {
    try {
      await this.run(["merge-base", "--is-ancestor", ancestor, descendant]);
      return true;
    } catch (error) {
      if (error instanceof GitCommandError && error.exitCode === 1) return false;
      throw error;
    }
  }

  async mergeBase(a: string, b: string): Promise<string> {
    return (await this.run(["merge-base", a, b])).trim();
  }

  /** The tree a three-way merge of `ours` and `theirs` gives, or `clean: false` on a conflict. */
  async mergeTree(ours: string, theirs: string): Promise<MergeTreeResult> {
    try {
      const out = await this.run(["merge-tree", "--write-tree", "--no-messages", ours, theirs]);
      const tree = out.split("\n")[0]?.trim() ?? "";
      if (!/^[0-9a-f]{40,64}$/.test(tree)) throw new Error(`git merge-tree printed no tree: ${out}`);
      return { clean: true, tree };
    } catch (error) {
      // exit 1: the merge has conflicts (git-merge-tree(1), "EXIT STATUS")
      if (error instanceof GitCommandError && error.exitCode === 1) return { clean: false };
      throw error;
    }
  }

  /** Lines added and deleted, and files changed, from `from` to `to` (`git diff --numstat`). */
  async diffStat(from: string, to: string): Promise<{ additions: number; deletions: number; files: number }> {
    const out = await this.run(["diff", "--numstat", from, to, "--"]);
    const stat = { additions: 0, deletions: 0, files: 0 };
    for (const line of out.split("\n")) {
      const [added, deleted] = line.split("\t");
      if (added === undefined || deleted === undefined) continue;
      stat.files++;
      stat.additions += Number(added) || 0; // "-" for binary files
      stat.deletions += Number(deleted) || 0;
    }
    return stat;
  }

  async treeOf(commit: string): Promise<string> {
    return (await this.run(["rev-parse", `${commit}^{tree}`])).trim();
  }

  /** Commits in `base..head`, oldest first. */
  async commitsBetween(base: string, head: string): Promise<BranchCommit[]> {
    const out = await this.run(["log", "--reverse", "--format=%H%x1f%s%x1f%b%x1e", `${base}..${head}`, "--"]);
    return out
      .split("\x1e")
      .map((record) => record.replace(/^\n/, ""))
      .filter((record) => record.length > 0)
      .map((record) => {
        const [sha = "", subject = "", body = ""] = record.split("\x1f");
        return { sha, subject, body: body.replace(/\n+$/, "") };
      });
  }

  /** Writes a commit object (not on any branch yet) and returns its SHA. */
  async commitTree(
    tree: string,
    parents: string[],
    message: string,
    who: { author: GitIdentity; committer: GitIdentity },
  ): Promise<string> {
    const args = ["commit-tree", tree, ...parents.flatMap((parent) => ["-p", parent]), "-m", message];
    const env = {
      GIT_AUTHOR_NAME: who.author.name,
      GIT_AUTHOR_EMAIL: who.author.email,
      GIT_COMMITTER_NAME: who.committer.name,
      GIT_COMMITTER_EMAIL: who.committer.email,
    };
    return (await this.run(args, env)).trim();
  }

  /** Moves `branch` from `expectedOld` to `next`; RefMovedError when it no longer points at `expectedOld`. */
  async moveBranch(branch: string, next: string, expectedOld: string, reason: string): Promise<void> {
    try {
      await this.run(["update-ref", "-m", reason, `refs/heads/${branch}`, next, expectedOld]);
    } catch (error) {
      if (error instanceof GitCommandError && (await this.branchHead(branch)) !== expectedOld) {
        throw new RefMovedError(`refs/heads/${branch} moved away from ${expectedOld}`, { cause: error });
      }
      throw error;
    }
  }

  /** Deletes `branch` if it still points at `expectedOld`. */
  async deleteBranch(branch: string, expectedOld: string): Promise<void> {
    await this.run(["update-ref", "-d", `refs/heads/${branch}`, expectedOld]);
  }

  private run(args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
    return git(["--git-dir", this.gitDir, ...args], { env });
  }
}

/**
 * Runs tasks one after the other (per repository), so that two API calls never race inside the simulator;
 * `update-ref`'s compare-and-swap still guards against writers outside it (pushes over HTTP).
 */
export class TaskQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Resolves once every task queued so far has ended. */
  async idle(): Promise<void> {
    await this.tail;
  }
}
