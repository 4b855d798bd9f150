import { readFileSync } from "node:fs";
import { parseDocument } from "yaml";
import type { z } from "zod";
import {
  fileConfigSchema,
  type ArgoCdServerConfig,
  type FileConfig,
  type RepositoryConfig,
  type SecretRef,
} from "./schema.js";

/** The configuration after validation, with secrets read from their env variables or files. */
export interface AppConfig extends Omit<FileConfig, "repositories" | "argocd"> {
  repositories: Array<Omit<RepositoryConfig, "auth"> & { auth?: { username: string; token: string } }>;
  argocd: { servers: Array<Omit<ArgoCdServerConfig, "token"> & { token: string }> };
}

/** Every problem found, each with the path of the key it is about. */
export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid configuration in ${source}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

/** Environment variables that override a key of the file (the Keptn name `NATS_URL` included). */
const ENV_OVERRIDES: Array<{ env: string; path: string[]; parse?: (v: string) => unknown }> = [
  { env: "NATS_URL", path: ["nats", "url"] },
  { env: "KEPTN_GITOPS_INTEGRATION_NAME", path: ["integration", "name"] },
  { env: "KEPTN_GITOPS_HTTP_PORT", path: ["http", "port"], parse: Number },
  { env: "KEPTN_GITOPS_LOG_LEVEL", path: ["log", "level"] },
  { env: "KEPTN_GITOPS_GIT_CACHE_DIR", path: ["git", "cacheDir"] },
];

export interface LoadConfigOptions {
  /** The YAML text and where it came from (for messages). */
  text: string;
  source: string;
  env: Record<string, string | undefined>;
  readSecretFile?: (path: string) => string;
}

export function loadConfigFile(path: string): AppConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(path, [
      `cannot read the file: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    ]);
  }

  return loadConfig({ text, source: path, env: process.env });
}

export function loadConfig(options: LoadConfigOptions): AppConfig {
  const document = parseDocument(options.text);
  if (document.errors.length > 0) {
    throw new ConfigError(
      options.source,
      document.errors.map(
        (e) => `YAML syntax (line ${e.linePos?.[0]?.line ?? "?"}): ${e.message.split("\n")[0]}`,
      ),
    );
  }
  const raw = (document.toJS() ?? {}) as Record<string, unknown>;
  for (const override of ENV_OVERRIDES) {
    const value = options.env[override.env];
    if (value !== undefined && value !== "")
      setPath(raw, override.path, override.parse ? override.parse(value) : value);
  }

  const parsed = fileConfigSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(options.source, formatIssues(parsed.error.issues));
  const problems = crossReferenceProblems(parsed.data);
  const readSecret = secretReader(options, problems);
  const config: AppConfig = {
    ...parsed.data,
    repositories: parsed.data.repositories.map((repo, i) => {
      const { auth, ...rest } = repo;
      if (!auth) return rest;
      return {
        ...rest,
        auth: { username: auth.username, token: readSecret(auth.token, `repositories.${i}.auth.token`) },
      };
    }),
    argocd: {
      servers: parsed.data.argocd.servers.map((server, i) => ({
        ...server,
        token: readSecret(server.token, `argocd.servers.${i}.token`),
      })),
    },
  };
  if (problems.length > 0) throw new ConfigError(options.source, problems);
  return config;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    if (typeof node[key] !== "object" || node[key] === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function formatIssues(issues: z.core.$ZodIssue[]): string[] {
  return issues.map(
    (issue) => `${issue.path.length ? issue.path.join(".") : "(top level)"}: ${issue.message}`,
  );
}

function crossReferenceProblems(config: FileConfig): string[] {
  const problems: string[] = [];
  const repositories = new Set(config.repositories.map((r) => r.name));
  const servers = new Set(config.argocd.servers.map((s) => s.name));
  duplicates(config.repositories.map((r) => r.name)).forEach((n) =>
    problems.push(`repositories: the name "${n}" is used twice`),
  );
  duplicates(config.argocd.servers.map((s) => s.name)).forEach((n) =>
    problems.push(`argocd.servers: the name "${n}" is used twice`),
  );
  config.targets.forEach((target, i) => {
    if (!repositories.has(target.repository)) {
      problems.push(
        `targets.${i}.repository: no repository is named "${target.repository}" (known: ${[...repositories].join(", ")})`,
      );
    }
    if (!servers.has(target.deploy.server)) {
      problems.push(
        `targets.${i}.deploy.server: no argocd server is named "${target.deploy.server}" (known: ${[...servers].join(", ") || "none"})`,
      );
    }
    for (const [key, template] of [
      ["file", target.file],
      ["deploy.application", target.deploy.application],
    ] as const) {
      const unknown = [...template.matchAll(/\{([^}]*)\}/g)]
        .map((m) => m[1])
        .filter((p) => !["project", "stage", "service"].includes(p ?? ""));
      if (unknown.length > 0)
        problems.push(
          `targets.${i}.${key}: unknown placeholder {${unknown.join("}, {")}}; use {project}, {stage}, {service}`,
        );
    }
  });
  return problems;
}

function duplicates(names: string[]): string[] {
  return names.filter((name, i) => names.indexOf(name) !== i);
}

function secretReader(options: LoadConfigOptions, problems: string[]) {
  const readFile = options.readSecretFile ?? ((path: string) => readFileSync(path, "utf8"));
  return (ref: SecretRef, path: string): string => {
    if ("fromEnv" in ref) {
      const value = options.env[ref.fromEnv];
      if (!value) problems.push(`${path}: the environment variable ${ref.fromEnv} is not set or empty`);
      return value ?? "";
    }
    try {
      const value = readFile(ref.fromFile).trim();
      if (!value) problems.push(`${path}: the file ${ref.fromFile} is empty`);
      return value;
    } catch (error) {
      problems.push(
        `${path}: cannot read ${ref.fromFile} (${(error as NodeJS.ErrnoException).code ?? String(error)})`,
      );
      return "";
    }
  };
}
