import { createPrivateKey, sign } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { z } from "zod";
import { RetryableError, TerminalError } from "../shared/errors.js";
import type { SecretRegistry } from "../shared/secrets.js";
import { rateLimitWait } from "./pull-requests/github-pull-request-host.js";
import { RateLimitedError } from "./pull-requests/request-policy.js";
import { abortable } from "../shared/abortable.js";

/**
 * Authentication as a GitHub App installation: the app's private key signs a short-lived JWT (RS256), which is
 * exchanged for an installation access token (`POST /app/installations/{id}/access_tokens`, about an hour). The
 * token is kept and renewed a margin before its `expires_at`, so that every git operation and API call gets a
 * token that still has time left. See "GitHub App" in readme.md next to this file.
 */
export interface GitHubAppTokensOptions {
  /** The app's numeric ID (sent as a number in `iss`) or its client ID (`Iv1.…`, sent as a string). */
  appId: number | string;
  installationId: number | string;
  /** The app's private key in PEM (PKCS#1 `RSA PRIVATE KEY`, as GitHub hands it out, or PKCS#8). */
  privateKey: string;
  /** `https://api.github.com` (default), or GitHub Enterprise Server's `https://<host>/api/v3`. */
  apiUrl?: string;
  /** Where the app is configured, for messages (for example `repository "gitops"`). */
  configuredAt?: string;
  /** Renew this long before `expires_at` (default 5 minutes; at most half the token's lifetime). */
  renewMarginMs?: number;
  requestTimeoutMs?: number;
  /** Every token issued is added here, so that log lines and messages never show it. */
  secrets?: SecretRegistry;
  /** Injected so tests need no global HTTP patching. */
  fetch?: typeof globalThis.fetch;
  /** The clock, in milliseconds since the epoch (default `Date.now`). */
  now?: () => number;
}

/** An installation token and when GitHub says it expires. */
export interface InstallationToken {
  token: string;
  expiresAt: Date;
}

/** GitHub refuses a JWT whose `exp` is more than 10 minutes ahead of its own clock; stay below that. */
const JWT_LIFETIME_S = 9 * 60;
/** GitHub's advice: `iat` 60 s in the past, against clock drift. */
const JWT_BACKDATE_S = 60;
const DEFAULT_RENEW_MARGIN_MS = 5 * 60_000;

const tokenSchema = z.object({ token: z.string().min(1), expires_at: z.string() });

/** Installation tokens of one GitHub App installation: one exchange at a time, cached until renewal is due. */
export class GitHubAppTokens {
  private readonly apiUrl: string;
  private readonly now: () => number;
  private readonly fetch: typeof globalThis.fetch;
  private key?: KeyObject;
  private current?: { token: InstallationToken; renewAt: number };
  private inFlight?: Promise<InstallationToken>;

  constructor(private readonly options: GitHubAppTokensOptions) {
    this.apiUrl = (options.apiUrl ?? "https://api.github.com").replace(/\/+$/, "");
    this.now = options.now ?? Date.now;
    this.fetch = options.fetch ?? globalThis.fetch;
    options.secrets?.addPrivateKey(options.privateKey);
  }

  /**
   * A token for the next git operation or API call, with at least the renewal margin left. Callers that ask
   * while an exchange is under way share it. `signal` ends this caller's wait, not the exchange.
   */
  async tokenFor(signal?: AbortSignal): Promise<string> {
    return (await this.installationToken(signal)).token;
  }

  async installationToken(signal?: AbortSignal): Promise<InstallationToken> {
    signal?.throwIfAborted();
    const current = this.current;
    if (current && this.now() < current.renewAt) return current.token;
    this.inFlight ??= this.exchange().finally(() => {
      this.inFlight = undefined;
    });
    return signal ? abortable(this.inFlight, signal) : this.inFlight;
  }

  /** Forgets the cached token (for example after a git host said the credentials were rejected). */
  invalidate(): void {
    this.current = undefined;
  }

  private async exchange(): Promise<InstallationToken> {
    const { installationId } = this.options;
    const url = `${this.apiUrl}/app/installations/${encodeURIComponent(String(installationId))}/access_tokens`;
    const attempt = `could not get an installation token for ${this.appLabel()} (installation ${installationId}) from ${this.apiUrl}`;
    let response: Response;
    try {
      response = await this.fetch(url, {
        method: "POST",
        headers: {
          accept: "application/vnd.github+json",
          authorization: `Bearer ${this.jwt()}`,
          "user-agent": "keptn-gitops-service",
          "x-github-api-version": "2022-11-28",
        },
        signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 30_000),
      });
    } catch (error) {
      if (error instanceof TerminalError) throw error;
      throw new RetryableError(`${attempt}: GitHub did not answer (${describe(error)})`, { cause: error });
    }
    const text = await response.text().catch(() => "");
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (response.status !== 201) throw this.failure(attempt, response, body);
    if (body === undefined) {
      throw new RetryableError(`${attempt}: GitHub answered 201 with a body that is not JSON`);
    }
    const parsed = tokenSchema.safeParse(body);
    const expiresAt = parsed.success ? new Date(parsed.data.expires_at) : undefined;
    if (!parsed.success || expiresAt === undefined || Number.isNaN(expiresAt.getTime())) {
      throw new TerminalError(
        `${attempt}: the answer has no "token" and "expires_at" this service understands`,
      );
    }
    const token = { token: parsed.data.token, expiresAt };
    this.options.secrets?.addBasicAuth("x-access-token", token.token);
    const issuedAt = this.now();
    const lifetime = Math.max(0, expiresAt.getTime() - issuedAt);
    const margin = Math.min(this.options.renewMarginMs ?? DEFAULT_RENEW_MARGIN_MS, lifetime / 2);
    this.current = { token, renewAt: expiresAt.getTime() - margin };
    return token;
  }

  private failure(attempt: string, response: Response, body: unknown): Error {
    const { status } = response;
    const said = githubMessage(body) ?? response.statusText;
    const where = this.options.configuredAt ? ` configured for ${this.options.configuredAt}` : "";
    if (status >= 500) return new RetryableError(`${attempt}: GitHub answered ${status} (${said})`);
    const headers = Object.fromEntries(response.headers);
    const wait = rateLimitWait(status, headers, said, this.now());
    if (wait !== undefined) {
      return new RateLimitedError(
        `${attempt}: GitHub is rate limiting the app (${status}); waiting ${Math.ceil(wait / 1000)} s`,
        wait,
      );
    }
    if (status === 401) {
      return new TerminalError(
        `${attempt}: GitHub rejected the app's JWT (401: ${said}); check that the private key${where} belongs to ` +
          `GitHub App ${this.options.appId} (a key of another app, or a revoked one, is refused) and that this ` +
          `machine's clock is right (GitHub checks the JWT's times against its own)`,
      );
    }
    if (status === 404) {
      return new TerminalError(
        `${attempt}: GitHub knows no installation ${this.options.installationId} of GitHub App ${this.options.appId} ` +
          `(404: ${said}); check the installation id and the app id${where}, and that the app is still installed ` +
          `on the account that owns the repository`,
      );
    }
    if (status === 403) {
      return new TerminalError(
        `${attempt}: GitHub refused (403: ${said}); check that installation ${this.options.installationId}${where} ` +
          `is not suspended and that the app has "Contents: read and write" (and "Pull requests" for pull-request mode)`,
      );
    }
    return new TerminalError(`${attempt}: GitHub answered ${status} (${said})`);
  }

  /** The app's JWT: RS256, `iat` 60 s in the past, `exp` 9 minutes ahead (GitHub allows at most 10). */
  private jwt(): string {
    const now = Math.floor(this.now() / 1000);
    const iss = /^\d+$/.test(String(this.options.appId)) ? Number(this.options.appId) : this.options.appId;
    const header = base64url(JSON.stringify({ alg: "RS256", typ: "JWT" }));
    const payload = base64url(JSON.stringify({ iat: now - JWT_BACKDATE_S, exp: now + JWT_LIFETIME_S, iss }));
    const signature = sign("RSA-SHA256", Buffer.from(`${header}.${payload}`), this.privateKey());
    return `${header}.${payload}.${signature.toString("base64url")}`;
  }

  private privateKey(): KeyObject {
    if (this.key) return this.key;
    const where = this.options.configuredAt ? ` configured for ${this.options.configuredAt}` : "";
    // a key from an environment variable often has its newlines written as "\n"
    const pem = this.options.privateKey.includes("\n")
      ? this.options.privateKey
      : this.options.privateKey.replace(/\\n/g, "\n");
    let key: KeyObject;
    try {
      key = createPrivateKey(pem);
    } catch (error) {
      throw new TerminalError(
        `the private key of ${this.appLabel()}${where} is not a PEM private key (${describeKeyError(error)}); ` +
          `paste the whole .pem file GitHub generated, with its BEGIN and END lines`,
      );
    }
    if (key.asymmetricKeyType !== "rsa") {
      throw new TerminalError(
        `the private key of ${this.appLabel()}${where} is not an RSA key (${key.asymmetricKeyType ?? "unknown type"}); ` +
          `GitHub Apps sign their JWT with RS256: use the .pem file GitHub generated`,
      );
    }
    this.key = key;
    return key;
  }

  private appLabel(): string {
    return `GitHub App ${this.options.appId}`;
  }
}

function base64url(text: string): string {
  return Buffer.from(text).toString("base64url");
}

/** GitHub's `message` from an error answer; never anything from the request. */
function githubMessage(body: unknown): string | undefined {
  const message = (body as { message?: unknown } | undefined)?.message;
  return typeof message === "string" ? message.slice(0, 300) : undefined;
}

/** A fetch failure in a few words: undici puts the reason (ECONNREFUSED, a timeout) in `cause`. */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return `${error.message}${cause}`.slice(0, 300);
}

/** OpenSSL's reason without the key text (node's messages hold none, but keep only the code to be sure). */
function describeKeyError(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === "string" ? code : "unreadable";
}
