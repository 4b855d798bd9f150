import { execFile } from "node:child_process";
import { chmod, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { TerminalError } from "../shared/errors.js";
import type { RepositoryRef } from "./gitops-repo.js";

type Signing = NonNullable<RepositoryRef["signing"]>;

/** What git needs to sign a repository's commits: config entries, and the environment of each git process. */
export interface SigningSetup {
  config: Array<[string, string]>;
  env: Record<string, string>;
}

/**
 * The signing keys of the repositories, written once per repository into a private directory (0700, files 0600)
 * outside every clone: for `ssh`, the key file git hands to `ssh-keygen -Y sign` (`gpg.format ssh`); for `openpgp`,
 * a GnuPG home of its own into which the key is imported, so that nothing of the host's keyring is used. The key
 * never goes on a command line or into `.git/config`.
 */
export class SigningKeys {
  private readonly setups = new Map<string, Promise<SigningSetup>>();

  constructor(
    /** `<git.cacheDir>/.signing` */
    private readonly root: string,
    private readonly baseEnv: Record<string, string>,
  ) {}

  setupFor(name: string, signing: Signing): Promise<SigningSetup> {
    let setup = this.setups.get(name);
    if (!setup) {
      setup = this.write(name, signing);
      this.setups.set(name, setup);
      // A failed setup is tried again by the next git operation.
      setup.catch(() => this.setups.delete(name));
    }
    return setup;
  }

  /** Removes the written keys; later git operations write them again. */
  async close(): Promise<void> {
    const names = [...this.setups.keys()];
    await Promise.all([...this.setups.values()].map((setup) => setup.catch(() => undefined)));
    this.setups.clear();
    for (const name of names) await rm(join(this.root, name), { recursive: true, force: true });
  }

  private async write(name: string, signing: Signing): Promise<SigningSetup> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    await chmod(this.root, 0o700);
    const dir = join(this.root, name);
    // What a previous process left (it may have been killed) goes first.
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { mode: 0o700 });
    const base: Array<[string, string]> = [["commit.gpgsign", "true"]];
    if (signing.format === "ssh") {
      const key = join(dir, "signing-key");
      await writeFile(key, `${signing.key.trim()}\n`, { mode: 0o600, flag: "wx" });
      return {
        config: [...base, ["gpg.format", "ssh"], ["user.signingkey", key]],
        env: {},
      };
    }
    const home = join(dir, "gnupg");
    await mkdir(home, { mode: 0o700 });
    const env = { ...this.baseEnv, GNUPGHOME: home };
    const gpg = (args: string[], input?: string) =>
      new Promise<string>((resolve, reject) => {
        const child = execFile("gpg", ["--batch", "--no-tty", ...args], { env }, (error, stdout, stderr) =>
          error ? reject(new Error(stderr.trim().split("\n").at(-1) ?? error.message)) : resolve(stdout),
        );
        if (input !== undefined) child.stdin?.end(input);
      });
    try {
      await gpg(["--import"], signing.key);
      const listing = await gpg(["--with-colons", "--list-secret-keys"]);
      const fingerprint = /^fpr:+([0-9A-F]{40,64}):/m.exec(listing)?.[1];
      if (!fingerprint) throw new Error("no secret key after the import");
      return {
        config: [...base, ["gpg.format", "openpgp"], ["user.signingkey", fingerprint]],
        env: { GNUPGHOME: home },
      };
    } catch (error) {
      throw new TerminalError(
        `the OpenPGP signing key of repository "${name}" could not be used (${(error as Error).message}); give an armored secret key without a passphrase (gpg --armor --export-secret-keys) in repositories[].signing.key`,
        { cause: error },
      );
    }
  }
}
