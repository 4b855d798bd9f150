import { access } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";

/** Where the lab's binaries, CRDs and Go caches live; `.ci/run` keeps it between runs on one machine. */
export function labDir(): string {
  return process.env["KEPTN_GITOPS_LAB_DIR"] ?? join(homedir(), ".cache", "keptn-gitops-lab");
}

export interface ComponentRecord {
  name: string;
  version: string;
  status: "built" | "cached" | "installed" | "failed";
  buildSeconds?: number;
  sizeBytes?: number;
  error?: string;
}

/** Fails with the command to run when `npm run lab:build` has not produced these binaries. */
export async function requireLabBinaries(binaries: string[]): Promise<void> {
  for (const binary of binaries) {
    await access(join(labDir(), "bin", binary)).catch(() => {
      throw new Error(`the lab has no ${binary} in ${join(labDir(), "bin")}: run npm run lab:build first`);
    });
  }
}
