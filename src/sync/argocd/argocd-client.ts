import { RetryableError, TerminalError } from "../../shared/errors.js";
import { applicationSchema, argoErrorSchema, type Application } from "./application-schema.js";

export interface ArgoCdClientOptions {
  /** e.g. https://argocd.example.com */
  baseUrl: string;
  token: string;
  requestTimeoutMs: number;
  /** Injected so tests need no global HTTP patching. */
  fetch?: typeof globalThis.fetch;
}

/** Argo CD answered that a sync is already running: wait and try again. */
export class OperationInProgressError extends RetryableError {
  override name = "OperationInProgressError";
}

/** The few calls of Argo CD's REST API (argocd-server, grpc-gateway) a deployment needs. */
export class ArgoCdClient {
  private readonly fetch: typeof globalThis.fetch;

  constructor(private readonly options: ArgoCdClientOptions) {
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  /** `GET /api/v1/applications/{name}`; with `refresh`, Argo CD compares with git first and answers after. */
  async getApplication(
    name: string,
    query: { refresh?: "normal" | "hard"; appNamespace?: string },
    signal?: AbortSignal,
  ): Promise<Application> {
    const params = new URLSearchParams();
    if (query.refresh) params.set("refresh", query.refresh);
    if (query.appNamespace) params.set("appNamespace", query.appNamespace);
    const suffix = params.size > 0 ? `?${params.toString()}` : "";
    return this.request(
      "GET",
      `/api/v1/applications/${encodeURIComponent(name)}${suffix}`,
      name,
      undefined,
      signal,
    );
  }

  /** `POST /api/v1/applications/{name}/sync` for one revision. */
  async sync(
    name: string,
    body: { revision: string; appNamespace?: string },
    signal?: AbortSignal,
  ): Promise<Application> {
    return this.request(
      "POST",
      `/api/v1/applications/${encodeURIComponent(name)}/sync`,
      name,
      { name, ...body },
      signal,
    );
  }

  /**
   * `GET /api/v1/applications`: every application the token may see, in one answer (the shared poll schedule).
   * Applications this service cannot read are left out.
   */
  async listApplications(signal?: AbortSignal): Promise<Application[]> {
    const json = await this.json("GET", "/api/v1/applications", "(list)", undefined, signal);
    const items = (json as { items?: unknown } | null)?.items;
    if (!Array.isArray(items)) return [];
    return items.flatMap((item) => {
      const parsed = applicationSchema.safeParse(item);
      return parsed.success ? [parsed.data] : [];
    });
  }

  private async request(
    method: string,
    path: string,
    app: string,
    body: unknown,
    signal?: AbortSignal,
  ): Promise<Application> {
    const json = await this.json(method, path, app, body, signal);
    const parsed = applicationSchema.safeParse(json);
    if (!parsed.success) {
      throw new TerminalError(
        `Argo CD answered with an application this service does not understand: ${parsed.error.issues[0]?.message ?? "?"}`,
      );
    }
    return parsed.data;
  }

  private async json(
    method: string,
    path: string,
    app: string,
    body: unknown,
    signal?: AbortSignal,
  ): Promise<unknown> {
    const url = new URL(path, this.options.baseUrl);
    const timeout = AbortSignal.timeout(this.options.requestTimeoutMs);
    let response: Response;
    try {
      response = await this.fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.options.token}`,
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? null : JSON.stringify(body),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw new RetryableError(
        `Argo CD at ${this.options.baseUrl} did not answer ${method} ${url.pathname}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const text = await response.text();
    if (!response.ok) throw this.failure(response.status, text, app);
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new RetryableError(
        `Argo CD at ${this.options.baseUrl} answered ${method} ${url.pathname} with a body that is not JSON`,
      );
    }
  }

  private failure(status: number, text: string, app: string): Error {
    const body = argoErrorSchema.safeParse(safeJson(text));
    const said = (body.success ? (body.data.message ?? body.data.error) : undefined) ?? text.slice(0, 200);
    const server = this.options.baseUrl;
    if (status === 400 && /another operation is already in progress/i.test(said))
      return new OperationInProgressError(said);
    // A sync window closes syncs for a while; waiting (up to the deadline) is the right answer, not giving up.
    if (status === 403 && /blocked by sync window/i.test(said)) return new RetryableError(`Argo CD: ${said}`);
    if (status === 401)
      return new TerminalError(
        `Argo CD at ${server} rejected the token (401: ${said}); check the token of this Argo CD server in argocd.servers`,
      );
    if (status === 403)
      return new TerminalError(
        `Argo CD at ${server} answered 403 for application ${app}: the application does not exist or the token may not read or sync it (${said})`,
      );
    if (status === 404)
      return new TerminalError(
        `Argo CD at ${server} has no application ${app} (404); check the target's deploy.application`,
      );
    if (status === 429 || status >= 500)
      return new RetryableError(`Argo CD at ${server} answered ${status}: ${said}`);
    return new TerminalError(
      `Argo CD at ${server} refused the request for application ${app} (${status}: ${said})`,
    );
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
