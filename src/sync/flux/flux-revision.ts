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
