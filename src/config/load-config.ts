import { readFileSync } from "node:fs";
import { isAbsolute, normalize, sep } from "node:path";
import { parseDocument } from "yaml";
import type { z } from "zod";
import {
  fileConfigSchema,
  isSshUrl,
  type ArgoCdServerConfig,
  type FileConfig,
  type FluxClusterConfig,
  type RepositoryConfig,
  type SecretRef,
} from "./schema.js";
import { choosePullRequestTarget } from "../gitops-repo/pull-requests/pull-request-hosts.js";
import type { PullRequestProvider } from "../gitops-repo/pull-requests/pull-request-host.js";
import type { PullRequestConfig } from "../gitops-repo/pull-requests/schema.js";
import { errorMessage } from "../shared/errors.js";

/** The configuration after validation, with secrets read from their env variables or files. */
export interface AppConfig extends Omit<FileConfig, "repositories" | "argocd" | "webhooks" | "flux"> {
  repositories: Array<
    Omit<RepositoryConfig, "auth" | "signing" | "pullRequest"> & {
      auth?: RepositoryAuth;
      signing?: CommitSigning;
      pullRequest?: PullRequestSettings;
    }
  >;
  argocd: { servers: Array<Omit<ArgoCdServerConfig, "token"> & { token: string }> };
  flux: {
    clusters: Array<Omit<FluxClusterConfig, "receiver"> & { receiver?: { url: string; hmacKey?: string } }>;
  };
  webhooks: { maxBodyBytes: number; flux?: { hmacKey?: string; token?: string }; argocd?: { token: string } };
}

/**
 * A repository's credentials, read: a token for HTTPS, a GitHub App (its key makes the tokens), or an SSH key with
 * the host keys to trust.
 */
export type RepositoryAuth =
  | { username: string; token: string; scheme: "basic" | "bearer" }
  | { githubApp: GitHubAppSettings }
  | { ssh: { privateKey: string; knownHosts?: string; strictHostKeyChecking: boolean } };

export interface GitHubAppSettings {
  appId: number | string;
  installationId: number | string;
  privateKey: string;
  apiUrl?: string;
}

/** `repositories[].pullRequest` with its token read; without a token, the repository's GitHub App gives one. */
export type PullRequestSettings = Omit<PullRequestConfig, "token"> & { token?: string };

/** How a repository's commits are signed, with the key read. */
export interface CommitSigning {
  format: "ssh" | "openpgp";
  /** An SSH private key file's text, or an armored OpenPGP secret key. */
  key: string;
}

/** The user name sent with a token when `auth.username` is absent (GitHub's convention). */
const DEFAULT_GIT_USERNAME = "x-access-token";

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
export const ENV_OVERRIDES: Array<{ env: string; path: string[]; parse?: (v: string) => unknown }> = [
  { env: "NATS_URL", path: ["nats", "url"] },
  { env: "KEPTN_GITOPS_INTEGRATION_NAME", path: ["integration", "name"] },
  { env: "KEPTN_GITOPS_HTTP_PORT", path: ["http", "port"], parse: Number },
  { env: "KEPTN_GITOPS_LOG_LEVEL", path: ["log", "level"] },
  { env: "KEPTN_GITOPS_GIT_CACHE_DIR", path: ["git", "cacheDir"] },
  { env: "KEPTN_GITOPS_STATE_DIR", path: ["state", "dir"] },
  { env: "KEPTN_GITOPS_REPLICA_ID", path: ["state", "replicaId"] },
];

const PLACEHOLDERS = ["project", "stage", "service"];

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

/**
 * Validates the whole file and reports every problem in one go: the shape (zod), the references between
 * sections, the templates, and the secrets. Nothing starts while one problem is left.
 */
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
  const raw: unknown = document.toJS() ?? {};
  if (!isRecord(raw)) {
    throw new ConfigError(options.source, [
      "(top level): the file must be a YAML mapping of the keys in docs/configuration.md",
    ]);
  }
  const overridden = applyEnvOverrides(raw, options.env);

  const problems: string[] = [];
  const parsed = fileConfigSchema.safeParse(raw);
  if (!parsed.success) problems.push(...formatIssues(parsed.error.issues, overridden));
  problems.push(...crossReferenceProblems(raw));
  const readSecret = secretReader(options, problems);
  const secretAt = (value: unknown, path: string) => (isSecretRef(value) ? readSecret(value, path) : "");
  list(raw["repositories"]).forEach((repo, i) => {
    if (isRecord(repo["signing"])) {
      const key = secretAt(repo["signing"]["key"], `repositories.${i}.signing.key`);
      const expected =
        repo["signing"]["format"] === "openpgp"
          ? "-----BEGIN PGP PRIVATE KEY BLOCK-----"
          : "PRIVATE KEY-----";
      if (key && !key.includes(expected)) {
        problems.push(
          `repositories.${i}.signing.key: the secret is not ${repo["signing"]["format"] === "openpgp" ? "an armored OpenPGP secret key (gpg --armor --export-secret-keys)" : "an SSH private key file"}`,
        );
      }
    }
    problems.push(...urlAuthProblems(repo, `repositories.${i}`));
    const targetModes = list(raw["targets"])
      .filter((target) => target["repository"] === repo["name"] && isRecord(target["pullRequest"]))
      .map((target) => (target["pullRequest"] as Record<string, unknown>)["mode"]);
    problems.push(...pullRequestProblems(repo, `repositories.${i}`, secretAt, targetModes));
    if (!isRecord(repo["auth"])) return;
    secretAt(repo["auth"]["token"], `repositories.${i}.auth.token`);
    const app = repo["auth"]["githubApp"];
    if (isRecord(app)) {
      const key = secretAt(app["privateKey"], `repositories.${i}.auth.githubApp.privateKey`);
      if (key && !/^-----BEGIN (RSA )?PRIVATE KEY-----$/m.test(key)) {
        problems.push(
          `repositories.${i}.auth.githubApp.privateKey: the secret is not a PEM private key; give the .pem file GitHub generated for the app`,
        );
      }
    }
    const ssh = repo["auth"]["ssh"];
    if (!isRecord(ssh)) return;
    const key = secretAt(ssh["privateKey"], `repositories.${i}.auth.ssh.privateKey`);
    if (key && !/^-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----$/m.test(key)) {
      problems.push(
        `repositories.${i}.auth.ssh.privateKey: the secret is not a private key; give the whole key file, from its -----BEGIN ... PRIVATE KEY----- line to its -----END line`,
      );
    }
    const hosts = secretAt(ssh["knownHosts"], `repositories.${i}.auth.ssh.knownHosts`);
    const malformed = hosts
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line && !line.startsWith("#") && line.split(/\s+/).length < 3);
    if (malformed.length > 0) {
      problems.push(
        `repositories.${i}.auth.ssh.knownHosts: "${malformed[0]}" is not a known_hosts line (<host> <key type> <key>); use the output of ssh-keyscan -p <port> <host>`,
      );
    }
  });
  list(isRecord(raw["argocd"]) ? raw["argocd"]["servers"] : undefined).forEach((server, i) =>
    secretAt(server["token"], `argocd.servers.${i}.token`),
  );
  const webhooks = isRecord(raw["webhooks"]) ? raw["webhooks"] : {};
  if (isRecord(webhooks["flux"])) {
    secretAt(webhooks["flux"]["hmacKey"], "webhooks.flux.hmacKey");
    secretAt(webhooks["flux"]["token"], "webhooks.flux.token");
  }
  if (isRecord(webhooks["argocd"])) secretAt(webhooks["argocd"]["token"], "webhooks.argocd.token");
  list(isRecord(raw["flux"]) ? raw["flux"]["clusters"] : undefined).forEach((cluster, i) => {
    if (isRecord(cluster["receiver"])) {
      const url = secretAt(cluster["receiver"]["url"], `flux.clusters.${i}.receiver.url`);
      if (url && !/^https?:\/\/[^/]+\/./.test(url)) {
        problems.push(
          `flux.clusters.${i}.receiver.url: the secret is not an http(s) URL with the Receiver's path (http://<notification-controller>/hook/<digest>)`,
        );
      }
      secretAt(cluster["receiver"]["hmacKey"], `flux.clusters.${i}.receiver.hmacKey`);
    }
    if (cluster["kubeconfig"] === undefined && !options.env["KUBERNETES_SERVICE_HOST"]) {
      problems.push(
        `flux.clusters.${i}.kubeconfig: give a kubeconfig file; without one the service must run in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set)`,
      );
    }
  });
  if (problems.length > 0 || !parsed.success) throw new ConfigError(options.source, problems);

  const silent = secretReader(options, []);
  const readPullRequest = ({ token, ...pullRequest }: PullRequestConfig): PullRequestSettings => ({
    ...pullRequest,
    ...(token ? { token: silent(token, "") } : {}),
  });
  return {
    ...parsed.data,
    repositories: parsed.data.repositories.map(({ signing, pullRequest, ...repo }) => {
      const { auth, ...unsigned } = repo;
      const rest = {
        ...unsigned,
        ...(signing ? { signing: { format: signing.format, key: silent(signing.key, "") } } : {}),
        ...(pullRequest ? { pullRequest: readPullRequest(pullRequest) } : {}),
      };
      if (auth?.githubApp) {
        const { privateKey, ...app } = auth.githubApp;
        return { ...rest, auth: { githubApp: { ...app, privateKey: silent(privateKey, "") } } };
      }
      if (auth?.ssh) {
        const { privateKey, knownHosts, strictHostKeyChecking } = auth.ssh;
        return {
          ...rest,
          auth: {
            ssh: {
              privateKey: silent(privateKey, ""),
              ...(knownHosts ? { knownHosts: silent(knownHosts, "") } : {}),
              strictHostKeyChecking,
            },
          },
        };
      }
      if (auth?.token) {
        return {
          ...rest,
          auth: {
            username: auth.username ?? DEFAULT_GIT_USERNAME,
            token: silent(auth.token, ""),
            scheme: auth.scheme ?? "basic",
          },
        };
      }
      return rest;
    }),
    argocd: {
      servers: parsed.data.argocd.servers.map((server) => ({ ...server, token: silent(server.token, "") })),
    },
    flux: {
      clusters: parsed.data.flux.clusters.map(({ receiver, ...cluster }) =>
        receiver
          ? {
              ...cluster,
              receiver: {
                url: silent(receiver.url, ""),
                ...(receiver.hmacKey ? { hmacKey: silent(receiver.hmacKey, "") } : {}),
              },
            }
          : cluster,
      ),
    },
    webhooks: {
      maxBodyBytes: parsed.data.webhooks.maxBodyBytes,
      ...(parsed.data.webhooks.flux
        ? {
            flux: {
              ...(parsed.data.webhooks.flux.hmacKey
                ? { hmacKey: silent(parsed.data.webhooks.flux.hmacKey, "") }
                : {}),
              ...(parsed.data.webhooks.flux.token
                ? { token: silent(parsed.data.webhooks.flux.token, "") }
                : {}),
            },
          }
        : {}),
      ...(parsed.data.webhooks.argocd
        ? { argocd: { token: silent(parsed.data.webhooks.argocd.token, "") } }
        : {}),
    },
  };
}

/** Applies the overrides; returns which key paths came from which variable, for messages. */
function applyEnvOverrides(raw: Record<string, unknown>, env: LoadConfigOptions["env"]): Map<string, string> {
  const overridden = new Map<string, string>();
  for (const override of ENV_OVERRIDES) {
    const value = env[override.env];
    if (value === undefined || value === "") continue;
    let node = raw;
    for (const key of override.path.slice(0, -1)) {
      if (!isRecord(node[key])) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    node[override.path[override.path.length - 1]!] = override.parse ? override.parse(value) : value;
    overridden.set(override.path.join("."), override.env);
  }
  return overridden;
}

function formatIssues(issues: z.core.$ZodIssue[], overridden: Map<string, string>): string[] {
  return issues.map((issue) => {
    const path = issue.path.join(".");
    const from = overridden.get(path);
    return `${path || "(top level)"}${from ? ` (from ${from})` : ""}: ${issue.message}`;
  });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function list(value: unknown): Array<Record<string, unknown>> {
  return Array.isArray(value) ? value.map((item) => (isRecord(item) ? item : {})) : [];
}

function isSecretRef(value: unknown): value is SecretRef {
  return (
    isRecord(value) &&
    ((typeof value["fromEnv"] === "string" && value["fromEnv"] !== "") ||
      (typeof value["fromFile"] === "string" && value["fromFile"] !== ""))
  );
}

/** Problems between sections and in templates, read from the raw file so they come with the shape problems. */
function crossReferenceProblems(raw: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const names = (items: Array<Record<string, unknown>>) =>
    items.map((item) => item["name"]).filter((n): n is string => typeof n === "string");
  const repositories = names(list(raw["repositories"]));
  const servers = names(list(isRecord(raw["argocd"]) ? raw["argocd"]["servers"] : undefined));
  const clusters = names(list(isRecord(raw["flux"]) ? raw["flux"]["clusters"] : undefined));
  duplicates(repositories).forEach((n) => problems.push(`repositories: the name "${n}" is used twice`));
  duplicates(servers).forEach((n) => problems.push(`argocd.servers: the name "${n}" is used twice`));
  duplicates(clusters).forEach((n) => problems.push(`flux.clusters: the name "${n}" is used twice`));

  list(raw["targets"]).forEach((target, i) => {
    const repository = target["repository"];
    if (typeof repository === "string" && !repositories.includes(repository)) {
      problems.push(
        `targets.${i}.repository: no repository is named "${repository}" (known: ${[...new Set(repositories)].join(", ") || "none"})`,
      );
    }
    const deploy = isRecord(target["deploy"]) ? target["deploy"] : {};
    if (
      deploy["tool"] !== "flux" &&
      typeof deploy["server"] === "string" &&
      !servers.includes(deploy["server"])
    ) {
      problems.push(
        `targets.${i}.deploy.server: no argocd server is named "${deploy["server"]}" (known: ${servers.join(", ") || "none"})`,
      );
    }
    if (
      deploy["tool"] === "flux" &&
      typeof deploy["cluster"] === "string" &&
      !clusters.includes(deploy["cluster"])
    ) {
      problems.push(
        `targets.${i}.deploy.cluster: no flux cluster is named "${deploy["cluster"]}" (known: ${clusters.join(", ") || "none"})`,
      );
    }
    const repositoryEntry = list(raw["repositories"]).find((r) => r["name"] === repository);
    if (repositoryEntry && isRecord(target["pullRequest"]) && !isRecord(repositoryEntry["pullRequest"])) {
      problems.push(
        `targets.${i}.pullRequest: repository "${String(repository)}" has no pullRequest section to open pull requests with; add one there`,
      );
    }
    const files: Array<[string, unknown]> = [
      ["file", target["file"]],
      ...list(target["files"]).map((entry, j): [string, unknown] => [`files.${j}.file`, entry["file"]]),
    ];
    const uris = isRecord(target["uris"]) ? target["uris"] : {};
    const templates: Array<[string, unknown]> = [
      ...files,
      ["deploy.application", deploy["application"]],
      ["deploy.name", deploy["name"]],
      ...list(uris["local"]).map((_, j): [string, unknown] => [
        `uris.local.${j}`,
        (uris["local"] as unknown[])[j],
      ]),
      ...list(uris["public"]).map((_, j): [string, unknown] => [
        `uris.public.${j}`,
        (uris["public"] as unknown[])[j],
      ]),
    ];
    for (const [key, template] of templates) {
      if (typeof template !== "string") continue;
      const unknown = [...template.matchAll(/\{([^}]*)\}/g)]
        .map((m) => m[1] ?? "")
        .filter((p) => !PLACEHOLDERS.includes(p));
      if (unknown.length > 0) {
        problems.push(
          `targets.${i}.${key}: unknown placeholder {${unknown.join("}, {")}}; use {project}, {stage}, {service}`,
        );
      }
    }
    for (const [key, file] of files) {
      if (typeof file !== "string") continue;
      const normalized = normalize(file);
      if (isAbsolute(file) || normalized === ".." || normalized.startsWith(`..${sep}`)) {
        problems.push(
          `targets.${i}.${key}: "${file}" leaves the repository; use a path relative to the repository root`,
        );
      }
    }
  });
  return problems;
}

/** An SSH URL needs an SSH key, and an SSH key needs an SSH URL: git would otherwise try without credentials. */
function urlAuthProblems(repo: Record<string, unknown>, path: string): string[] {
  const url = repo["url"];
  if (typeof url !== "string") return [];
  const auth = isRecord(repo["auth"]) ? repo["auth"] : {};
  if (isSshUrl(url)) {
    for (const https of ["token", "githubApp"]) {
      if (auth[https] !== undefined) {
        return [
          `${path}.auth.${https}: ${url} is an SSH URL, which takes auth.ssh (a private key); use the https:// URL of the repository with ${https === "token" ? "a token" : "the GitHub App"}`,
        ];
      }
    }
    if (repo["auth"] === undefined) {
      return [`${path}.auth: ${url} is an SSH URL: give auth.ssh with the private key and knownHosts`];
    }
    return [];
  }
  if (auth["ssh"] !== undefined) {
    return [
      `${path}.auth.ssh: an SSH key works with ssh:// and git@host:path URLs only; use the SSH URL of the repository, or auth.token with ${url}`,
    ];
  }
  return [];
}

/**
 * A pull request needs a token: its own, or the repository's GitHub App. The GitHub App works with GitHub only,
 * and auto-merge needs a host that has it (GitLab).
 */
function pullRequestProblems(
  repo: Record<string, unknown>,
  path: string,
  secretAt: (value: unknown, path: string) => string,
  /** The `pullRequest.mode` overrides of the repository's targets. */
  targetModes: unknown[],
): string[] {
  const pullRequest = repo["pullRequest"];
  if (!isRecord(pullRequest)) return [];
  secretAt(pullRequest["token"], `${path}.pullRequest.token`);
  const app = isRecord(repo["auth"]) && repo["auth"]["githubApp"] !== undefined;
  if (pullRequest["token"] === undefined && !app) {
    return [
      `${path}.pullRequest.token: give a token that may open and merge pull requests (or use auth.githubApp on GitHub)`,
    ];
  }
  const provider = pullRequest["provider"];
  const apiUrl = pullRequest["apiUrl"];
  if (typeof repo["url"] !== "string" || typeof repo["name"] !== "string") return [];
  let chosen: PullRequestProvider;
  try {
    chosen = choosePullRequestTarget(
      { name: repo["name"], url: repo["url"] },
      {
        ...(provider === "github" || provider === "gitlab" ? { provider } : {}),
        ...(typeof apiUrl === "string" ? { apiUrl } : {}),
      },
    ).provider;
  } catch (error) {
    return [`${path}.pullRequest: ${errorMessage(error)}`];
  }
  const problems: string[] = [];
  if (app && pullRequest["token"] === undefined && chosen === "gitlab") {
    problems.push(
      `${path}.pullRequest.token: a GitHub App's token does not work with GitLab; give a GitLab token`,
    );
  }
  // An explicit `provider: github` with `mode: auto-merge` is already refused by the schema.
  const modes = [...(provider === "github" ? [] : [pullRequest["mode"]]), ...targetModes];
  if (chosen === "github" && modes.includes("auto-merge")) {
    problems.push(
      `${path}.pullRequest: the pull requests are on GitHub, whose REST API cannot turn on auto-merge; use mode "wait-for-merge" (with auto-merge enabled in the repository settings) or "open-only"`,
    );
  }
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
