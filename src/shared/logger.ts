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
