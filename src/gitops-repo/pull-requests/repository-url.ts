/** Host and path of a git repository URL: `https://host/a/b.git`, `ssh://git@host:22/a/b.git`, `git@host:a/b.git`. */
export interface RepositoryLocation {
  /** Lowercase host name, without port. */
  host: string;
  /** `origin` of an http(s) URL (scheme, host, port), for deriving an API URL; undefined for SSH URLs. */
  origin?: string;
  /** The path without leading `/`, trailing `/` or `.git`: `owner/repo` on GitHub, `group/sub/project` on GitLab. */
  path: string;
}

export function parseRepositoryUrl(url: string): RepositoryLocation | undefined {
  const scpLike = /^(?:[^@/:\s]+@)?([^@/:\s]+):(?!\/\/)(.+)$/.exec(url);
  if (scpLike && !/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    return location(scpLike[1]!, undefined, scpLike[2]!);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  const origin = /^https?:$/.test(parsed.protocol) ? parsed.origin : undefined;
  return location(parsed.hostname, origin, decodeURIComponent(parsed.pathname));
}

function location(host: string, origin: string | undefined, rawPath: string): RepositoryLocation | undefined {
  const path = rawPath
    .replace(/^\/+/, "")
    .replace(/\/+$/, "")
    .replace(/\.git$/, "");
  if (path.length === 0 || host.length === 0) return undefined;
  return { host: host.toLowerCase(), ...(origin ? { origin } : {}), path };
}
