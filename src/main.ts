#!/usr/bin/env node
import { parseArgs } from "node:util";
import { buildApp } from "./app.js";
import { ConfigError, loadConfigFile } from "./config/load-config.js";
import { createLogger } from "./shared/logger.js";
import { SecretRegistry } from "./shared/secrets.js";

const USAGE = `usage:
  keptn-gitops serve --config FILE   run the service (Keptn over NATS -> git -> Argo CD)
  keptn-gitops demo                  run the whole loop on this machine with embedded defaults
  keptn-gitops help`;

async function serve(configPath: string): Promise<void> {
  const secrets = new SecretRegistry();
  const config = loadConfigFile(configPath);
  const logger = createLogger({ level: config.log.level, secrets });
  const app = buildApp({ config, logger, secrets });
  await app.start();
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, "stopping");
      resolve();
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  await app.stop();
}

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: "string", short: "c" }, help: { type: "boolean", short: "h" } },
  });
  const command = positionals[0] ?? "help";
  if (values.help || command === "help") {
    console.log(USAGE);
    return 0;
  }
  if (command === "serve") {
    if (!values.config) {
      console.error(`serve needs --config FILE\n${USAGE}`);
      return 2;
    }
    await serve(values.config);
    return 0;
  }
  if (command === "demo") {
    const { runDemo } = await import("./demo/demo.js");
    return runDemo();
  }
  console.error(`unknown command "${command}"\n${USAGE}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError) console.error(error.message);
    else console.error(error);
    process.exit(1);
  },
);
