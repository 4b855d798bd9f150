import { Writable } from "node:stream";
import { childProcessEnvironment } from "../../src/config/process-env.js";
import { SimpleGitGitopsRepo } from "../../src/gitops-repo/simple-git-gitops-repo.js";
import { createLogger } from "../../src/shared/logger.js";
import { SecretRegistry } from "../../src/shared/secrets.js";

/** The service's git adapter on its own, with its clones in `cacheDir`, logging nothing below warn. */
export function quietRepo(cacheDir: string, maxChangesPerCommit?: number): SimpleGitGitopsRepo {
  const secrets = new SecretRegistry();
  return new SimpleGitGitopsRepo({
    cacheDir,
    author: { name: "Keptn GitOps Service", email: "keptn-gitops@localhost" },
    pushAttempts: 3,
    ...(maxChangesPerCommit ? { maxChangesPerCommit } : {}),
    commandTimeoutMs: 30_000,
    baseEnv: childProcessEnvironment(),
    logger: createLogger({
      level: "warn",
      secrets,
      destination: new Writable({ write: (_c, _e, done) => done() }),
    }),
    secrets,
  });
}
