import { pino, type Logger, type DestinationStream } from "pino";
import type { SecretRegistry } from "./secrets.js";

export type { Logger } from "pino";

export interface LoggerOptions {
  level: string;
  secrets: SecretRegistry;
  /** Where the JSON lines go; stdout by default. */
  destination?: DestinationStream;
}

/** pino JSON logs; known secret values and credential-looking fields are redacted from every line. */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: "keptn-gitops-service" },
      redact: {
        paths: ["*.token", "*.password", "*.authorization", "*.headers.authorization", "token", "password"],
        censor: "[REDACTED]",
      },
      hooks: { streamWrite: (line) => options.secrets.redact(line) },
    },
    options.destination ?? pino.destination(1),
  );
}

/**
 * `logger.child(bindings)` for a logger kept as long as a task (minutes, and thousands at once). pino builds the
 * child's bindings (`pino.symbols.chindingsSym`, its public hook for integrations) by concatenation, which V8
 * keeps as a tree of about 20 string pieces (about 900 bytes); here they are one flat string (about 200).
 */
export function taskLogger(logger: Logger, bindings: Record<string, string>): Logger {
  const child = logger.child(bindings);
  const state = child as unknown as Record<symbol, unknown>;
  const chindings = state[pino.symbols.chindingsSym];
  if (typeof chindings === "string") state[pino.symbols.chindingsSym] = Buffer.from(chindings).toString();
  return child;
}
