/** Variables a git child process may inherit: search path, home, locale, temp dir, proxies and CA bundles. */
const INHERITED =
  /^(PATH|HOME|USER|LANG|LANGUAGE|LC_[A-Z]+|TZ|TMPDIR|SSL_CERT_FILE|SSL_CERT_DIR|(HTTPS?|NO|ALL)_PROXY|(https?|no|all)_proxy)$/;

/**
 * The part of the process environment that child processes (git) need to run. Everything else stays out: git's
 * own variables (so that only what the service sets reaches git) and editors, pagers or askpass helpers.
 */
export function childProcessEnvironment(): Record<string, string> {
  const env: Record<string, string> = {};

  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && INHERITED.test(key)) env[key] = value;
  }
  return env;
}
