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

  /**
   * Adds a private key (PEM, OpenSSH, armored OpenPGP): the whole text, and each line of its body, as a log line
   * may carry a part of it, or the key with its newlines escaped (`\\n`, as in environment variables).
   */
  addPrivateKey(key: string): void {
    this.add(key);
    for (const line of key.split(/\\n|\r?\n/)) {
      if (!line.startsWith("-----")) this.add(line.trim());
    }
  }

  redact(text: string): string {
    let result = text;
    for (const value of this.values) {
      if (result.includes(value)) result = result.split(value).join("[REDACTED]");
    }
    return result;
  }
}
