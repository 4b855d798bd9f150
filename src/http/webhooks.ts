import { createHmac, timingSafeEqual } from "node:crypto";
import express, { type ErrorRequestHandler, type Express, type Request, type Response } from "express";
import { z } from "zod";
import type { Logger } from "../shared/logger.js";
import type { WakeUps } from "../sync/wake-ups.js";

export interface WebhookOptions {
  maxBodyBytes: number;
  /** The key of a Flux Provider of type generic-hmac. */
  fluxHmacKey?: string;
  /** The bearer token a Flux Provider of type generic sends from its Secret's `headers`. */
  fluxToken?: string;
  /** The token Argo CD Notifications sends as `Authorization: Bearer`; the Argo CD route is off without it. */
  argocdToken?: string;
  wakeUps: WakeUps;
  logger: Logger;
}

/** The parts of a Flux event (fluxcd/pkg apis/event/v1beta1) the receiver reads. */
const fluxEventSchema = z.looseObject({
  involvedObject: z.looseObject({ kind: z.string(), name: z.string(), namespace: z.string().optional() }),
  reason: z.string().optional(),
  metadata: z.record(z.string(), z.string()).optional(),
});

/** What the Argo CD Notifications template of docs/notifications.md sends. */
const argoNotificationSchema = z.looseObject({
  app: z.string().min(1),
  appNamespace: z.string().optional(),
  revision: z.string().optional(),
});

/** The HMAC algorithms Flux's generic-hmac signature may name (`X-Signature: <algo>=<hex>`). */
const HMAC_ALGORITHMS = new Set(["sha1", "sha224", "sha256", "sha384", "sha512"]);

/**
 * `POST /webhooks/flux` (notification-controller, generic-hmac Provider) and `POST /webhooks/argocd` (Argo CD
 * Notifications webhook). A valid notification wakes the deployments waiting on the object it names and is
 * answered 202; the tool's API then decides. Wrong signature or token: 401. Body over the limit: 413. Not JSON
 * or not the expected shape: 400. Nothing secret is logged: not the headers, not the body.
 */
export function mountWebhooks(app: Express, options: WebhookOptions): void {
  const raw = express.raw({ type: () => true, limit: options.maxBodyBytes });
  const { fluxHmacKey, fluxToken, argocdToken, wakeUps, logger } = options;

  if (fluxHmacKey || fluxToken) {
    app.post("/webhooks/flux", raw, (req, res) => {
      const body = rawBody(req);
      const signed =
        fluxHmacKey !== undefined && validFluxSignature(req.get("x-signature"), body, fluxHmacKey);
      const bearing = fluxToken !== undefined && sameSecret(bearer(req.get("authorization")), fluxToken);
      if (!signed && !bearing) {
        refuse(
          res,
          401,
          fluxHmacKey
            ? "the X-Signature header is missing or does not match the body (generic-hmac key)"
            : "the Authorization header does not carry the configured webhook token",
        );
        return;
      }
      const event = parseJson(body, fluxEventSchema, res);
      if (!event) return;
      const { kind, namespace, name } = event.involvedObject;
      // Kustomizations and HelmReleases are followed; an event of a source cannot name the deployment, so it
      // wakes nobody.
      const followed = kind === "Kustomization" || kind === "HelmRelease";
      const woken = followed ? wakeUps.wake("flux", namespace, name) : 0;
      logger.debug(
        { kind, namespace, name, reason: event.reason, revision: event.metadata?.["revision"], woken },
        "Flux notification",
      );
      res.status(202).json({ woken });
    });
  }

  if (argocdToken) {
    app.post("/webhooks/argocd", raw, (req, res) => {
      if (!sameSecret(bearer(req.get("authorization")), argocdToken)) {
        refuse(res, 401, "the Authorization header does not carry the configured webhook token");
        return;
      }
      const notification = parseJson(rawBody(req), argoNotificationSchema, res);
      if (!notification) return;
      const woken = wakeUps.wake("argocd", notification.appNamespace || undefined, notification.app);
      logger.debug({ app: notification.app, revision: notification.revision, woken }, "Argo CD notification");
      res.status(202).json({ woken });
    });
  }

  const bodyErrors: ErrorRequestHandler = (error: { type?: string; status?: number }, req, res, next) => {
    if (!req.path.startsWith("/webhooks/")) {
      next(error);
      return;
    }
    if (error.type === "entity.too.large") {
      refuse(res, 413, `the body is larger than ${options.maxBodyBytes} bytes (webhooks.maxBodyBytes)`);
      return;
    }
    refuse(res, error.status && error.status < 500 ? error.status : 400, "the body could not be read");
  };
  app.use(bodyErrors);
}

function rawBody(req: Request): Buffer {
  return Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
}

function refuse(res: Response, status: number, error: string): void {
  res.status(status).json({ error });
}

function parseJson<T>(body: Buffer, schema: z.ZodType<T>, res: Response): T | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body.toString("utf8"));
  } catch {
    refuse(res, 400, "the body is not JSON");
    return undefined;
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    refuse(
      res,
      400,
      `the body is not a notification this receiver reads: ${issue?.path.join(".") || "(body)"}: ${issue?.message ?? "?"}`,
    );
    return undefined;
  }
  return parsed.data;
}

/** `X-Signature: sha256=<hex HMAC of the raw body>` (Flux generic-hmac), compared in constant time. */
function validFluxSignature(header: string | undefined, body: Buffer, key: string): boolean {
  const match = /^(\w+)=([0-9a-f]+)$/i.exec(header?.trim() ?? "");
  if (!match || !HMAC_ALGORITHMS.has(match[1]!.toLowerCase())) return false;
  const expected = createHmac(match[1]!.toLowerCase(), key).update(body).digest();
  const given = Buffer.from(match[2]!, "hex");
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function bearer(header: string | undefined): string {
  const match = /^Bearer\s+(.+)$/i.exec(header?.trim() ?? "");
  return match?.[1] ?? "";
}

/** Constant-time comparison of two secrets (digests first, so that lengths leak nothing). */
function sameSecret(given: string, expected: string): boolean {
  const digest = (value: string) => createHmac("sha256", "keptn-gitops-webhook").update(value).digest();
  return given.length > 0 && timingSafeEqual(digest(given), digest(expected));
}
