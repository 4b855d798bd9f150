import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";

export interface SshGitServerOptions {
  /** Directory holding the bare repositories; `repoUrl(name)` serves `<projectRoot>/<name>`. */
  projectRoot: string;
}

/** An ed25519 key pair made by ssh-keygen: the private key file's text and the `ssh-ed25519 AAAA... comment` line. */
export interface SshKeyPair {
  privateKey: string;
  publicKey: string;
}

const SSHD = "/usr/sbin/sshd";
const READY_TIMEOUT_MS = 10_000;
const EXIT_GRACE_MS = 5_000;
const OUTPUT_LIMIT = 256 * 1024;

/** sshd processes started and not yet exited, killed when the test process exits without `stop()`. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/**
 * A git host over SSH for tests: a real OpenSSH `sshd` (Debian package openssh-server) on a free loopback port,
 * running as the current user with its own host key. The key pair `clientKey` is in its authorized_keys;
 * `wrongKey` is not. Git reaches the bare repositories as on any SSH host: `git-upload-pack` and
 * `git-receive-pack` run in the user's shell (`ssh://<user>@127.0.0.1:<port>/<path>`).
 *
 * It runs without root (`UsePAM no`, `StrictModes no`, pid file and keys in a temporary directory) and as root
 * (then sshd needs its privilege separation directory `/run/sshd`, made here when it is missing).
 */
export class SshGitServer {
  /** The user of the URLs: the one running the tests, as sshd runs as that user and can log in no one else. */
  readonly user = userInfo().username;
  /** Everything sshd logs (`-e`, `LogLevel VERBOSE`): accepted and refused keys, for diagnostics. */
  output = "";

  private child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly projectRoot: string,
    /** The server's host key: `ssh-ed25519 AAAA...`. */
    readonly hostPublicKey: string,
    /** Authorized: the key the service is given. */
    readonly clientKey: SshKeyPair,
    /** Not authorized: sshd refuses it with "Permission denied (publickey)". */
    readonly wrongKey: SshKeyPair,
  ) {}

  static async start(options: SshGitServerOptions): Promise<SshGitServer> {
    const dir = await mkdtemp(join(tmpdir(), "sshd-"));
    try {
      const host = await generateKeyPair(join(dir, "host_ed25519"), "test sshd host key");
      const clientKey = await generateKeyPair(join(dir, "client_ed25519"), "keptn-gitops-service test key");
      const wrongKey = await generateKeyPair(join(dir, "wrong_ed25519"), "a key nobody authorized");
      await writeFile(join(dir, "authorized_keys"), `restrict ${clientKey.publicKey}\n`, { mode: 0o600 });
      if (process.getuid?.() === 0) await mkdir("/run/sshd", { recursive: true, mode: 0o755 });
      // A port found free may be taken before sshd binds it: then try another.
      let lastError: unknown;
      for (let attempt = 0; attempt < 3; attempt++) {
        const server = new SshGitServer(
          await freePort(),
          dir,
          resolve(options.projectRoot),
          host.publicKey,
          clientKey,
          wrongKey,
        );
        try {
          await server.launch();
          return server;
        } catch (error) {
          lastError = error;
          await server.kill();
          if (!/Address already in use/i.test(server.output)) break;
        }
      }
      throw lastError;
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** `ssh://<user>@127.0.0.1:<port>/<projectRoot>/<name>`, e.g. for "gitops.git". */
  repoUrl(name: string): string {
    return `ssh://${this.user}@127.0.0.1:${this.port}${this.projectRoot}/${name}`;
  }

  /** The known_hosts line for this server, as `ssh-keyscan -p <port> 127.0.0.1` prints it. */
  knownHosts(): string {
    return `[127.0.0.1]:${this.port} ${this.hostPublicKey}`;
  }

  /** Kills sshd (connections still open end with it) and removes its keys and configuration. */
  async stop(): Promise<void> {
    await this.kill();
    await rm(this.dir, { recursive: true, force: true });
  }

  private async launch(): Promise<void> {
    const config = join(this.dir, `sshd_config_${this.port}`);
    await writeFile(
      config,
      [
        `ListenAddress 127.0.0.1:${this.port}`,
        `HostKey ${join(this.dir, "host_ed25519")}`,
        `PidFile ${join(this.dir, `sshd_${this.port}.pid`)}`,
        `AuthorizedKeysFile ${join(this.dir, "authorized_keys")}`,
        `AllowUsers ${this.user}`,
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        // Tests may run as root (CI does): a key is then all it takes, as for any other user.
        "PermitRootLogin prohibit-password",
        // Without root there is no PAM session to open, and the temporary directory is not root-owned.
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        // Git sends GIT_PROTOCOL=version=2 through SendEnv; accepting it lets upload-pack speak protocol v2.
        "AcceptEnv GIT_PROTOCOL",
        "LogLevel VERBOSE",
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
    const child = spawn(SSHD, ["-D", "-e", "-f", config], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    });
    this.child = child;
    running.add(child);
    child.once("exit", () => running.delete(child));
    child.stderr?.on("data", (chunk: Buffer) => {
      if (this.output.length < OUTPUT_LIMIT) this.output += chunk.toString("utf8");
    });
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(
        () => fail(new Error(`sshd did not listen within ${READY_TIMEOUT_MS}ms:\n${this.output}`)),
        READY_TIMEOUT_MS,
      );
      const onData = () => {
        if (this.output.includes(`Server listening on 127.0.0.1 port ${this.port}`)) {
          clearTimeout(timer);
          child.stderr?.off("data", onData);
          ready();
        }
      };
      child.stderr?.on("data", onData);
      child.once("error", (error) => {
        clearTimeout(timer);
        fail(
          new Error(`could not run ${SSHD} (apt-get install openssh-server): ${error.message}`, {
            cause: error,
          }),
        );
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        fail(new Error(`sshd exited (${signal ?? `code ${code}`}) before listening:\n${this.output}`));
      });
    });
  }

  private async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((done) => child.once("exit", () => done()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), EXIT_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }
}

/** Makes an ed25519 key pair without passphrase at `path` (and `path.pub`). */
export async function generateKeyPair(path: string, comment: string): Promise<SshKeyPair> {
  await promisify(execFile)("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path]);
  return {
    privateKey: await readFile(path, "utf8"),
    publicKey: (await readFile(`${path}.pub`, "utf8")).trim(),
  };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ready, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => ready());
  });
  const address = server.address();
  await new Promise<void>((done) => server.close(() => done()));
  if (address === null || typeof address === "string") throw new Error("no free port");
  return address.port;
}
