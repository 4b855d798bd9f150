/**
 * The secret values the service holds (git and Argo CD tokens). Log lines and event messages pass through
 * `redact` as a last line of defence, so that a token that slipped into an error text (a URL, a command line)
 * never leaves the process.
 */
export class SecretRegistry {
  private readonly values = new Set<string>();

  add(value: string | undefined): void {
    // Very short values would blank out ordinary words; tokens are never this short.
    if (value && value.length >= 6) {
      this.values.add(value);
      this.values.add(encodeURIComponent(value));
      this.values.add(Buffer.from(value).toString("base64"));
    }
  }

  /** Adds `user:token` in the base64 form that appears in a Basic authorization header. */
  addBasicAuth(username: string, token: string): void {
    this.add(token);
    this.values.add(Buffer.from(`${username}:${token}`).toString("base64"));
  }

  redact(text: string): string {
    let result = text;
    for (const value of this.values) {
      if (result.includes(value)) result = result.split(value).join("[REDACTED]");
    }
    return result;
  }
}
