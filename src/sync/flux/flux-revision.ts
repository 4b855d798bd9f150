/**
 * The commit SHA in a Flux revision string (interfaces.md F5; pinned in the lab): `main@sha1:<40 hex>` (Flux 2.x),
 * `refs/heads/main@sha1:<sha>`, `sha1:<sha>` (a pinned commit), `sha256:<64 hex>` (SHA-256 repositories) and the
 * older `main/<sha>`. Undefined for anything else (an OCI digest, a chart version).
 */
export function commitOfRevision(revision: string | undefined): string | undefined {
  if (!revision) return undefined;
  const current = /(?:^|@)sha(?:1|256):([0-9a-f]{40}|[0-9a-f]{64})$/i.exec(revision);
  if (current) return current[1]!.toLowerCase();
  const older = /^[^@]+\/([0-9a-f]{40})$/i.exec(revision);
  return older ? older[1]!.toLowerCase() : undefined;
}

/**
 * The abbreviated commit in the version of a chart that source-controller built from a GitRepository with
 * `reconcileStrategy: Revision`: `0.1.0+<first 12 hex of the commit>`, and `0.1.0+<12 hex>.<HelmChart generation>`
 * when the HelmRelease has `valuesFiles` (both pinned in the lab). Only a short SHA, so it is matched as an
 * abbreviation. Undefined for a version without one (`0.1.0`, or `0.1.0+1` with `ChartVersion`).
 */
export function commitOfChartVersion(version: string | undefined): string | undefined {
  const match = version ? /\+([0-9a-f]{7,64})(?:\.\d+)?$/i.exec(version) : null;
  return match ? match[1]!.toLowerCase() : undefined;
}
