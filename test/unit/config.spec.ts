import { expect } from "chai";
import { ConfigError, loadConfig } from "../../src/config/load-config.js";

const VALID = `
repositories:
  - name: gitops
    url: https://git.example.com/org/gitops.git
    auth:
      token: { fromEnv: GITOPS_TOKEN }
argocd:
  servers:
    - name: main
      url: https://argocd.example.com
      token: { fromFile: /run/secrets/argocd-token }
targets:
  - match: { project: sockshop }
    repository: gitops
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: main }
    timeout: 5m
`;

function problemsOf(text: string, env: Record<string, string> = {}): string[] {
  try {
    loadConfig({ text, source: "config.yaml", env, readSecretFile: () => "argo-secret-token" });
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe("configuration", () => {
  it("loads a valid file with defaults and secrets from env and files", () => {
    const config = loadConfig({
      text: VALID,
      source: "config.yaml",
      env: { GITOPS_TOKEN: "git-secret-token", NATS_URL: "nats://nats.keptn:4222" },
      readSecretFile: (path) => (path === "/run/secrets/argocd-token" ? "argo-secret-token\n" : ""),
    });
    expect(config.integration.name).to.equal("gitops-service");
    expect(config.nats.url).to.equal("nats://nats.keptn:4222");
    expect(config.repositories[0]).to.deep.include({
      branch: "main",
      auth: { username: "x-access-token", token: "git-secret-token", scheme: "basic" },
    });
    expect(config.argocd.servers[0]?.token).to.equal("argo-secret-token");
    expect(config.targets[0]?.timeout).to.equal(300_000);
    expect(config.targets[0]?.match).to.deep.equal({ project: "sockshop", stage: "*", service: "*" });
    expect(config.targets[0]?.deploy).to.include({ tool: "argocd", application: "{service}-{stage}" });
  });

  it("lists every problem at once, each with its path", () => {
    const text = `
repositories:
  - name: gitops
    url: git@github.com:org/gitops.git
    auth: { token: "inline-secret" }
targets:
  - repository: other
    file: "charts/{app}/values.yaml"
    change: { kind: helm-values }
    deploy: { tool: argocd, server: main }
    timeout: soon
`;
    const problems = problemsOf(text);
    expect(problems).to.include.members([
      'targets.0.repository: no repository is named "other" (known: gitops)',
      "targets.0.file: unknown placeholder {app}; use {project}, {stage}, {service}",
      'targets.0.deploy.server: no argocd server is named "main" (known: none)',
      "repositories.0.auth.token: git@github.com:org/gitops.git is an SSH URL, which takes auth.ssh (a private key); use the https:// URL of the repository with a token",
      'targets.0.timeout: "soon" is not a duration; write e.g. "30s", "10m" or "1h"',
      "targets.0.change: name where the image goes: `tag` (with `repository` if wanted) or `reference`",
    ]);
    expect(problems.some((p) => p.startsWith("repositories.0.auth.token"))).to.equal(
      true,
      problems.join("\n"),
    );
  });

  it("checks references between sections and template placeholders", () => {
    const text = VALID.replace("repository: gitops\n    file", "repository: missing\n    file").replace(
      "{stage}.yaml",
      "{env}.yaml",
    );
    expect(problemsOf(text, { GITOPS_TOKEN: "x-secret-token" })).to.deep.equal([
      'targets.0.repository: no repository is named "missing" (known: gitops)',
      "targets.0.file: unknown placeholder {env}; use {project}, {stage}, {service}",
    ]);
  });

  it("says which secret is missing", () => {
    expect(problemsOf(VALID)).to.deep.equal([
      "repositories.0.auth.token: the environment variable GITOPS_TOKEN is not set or empty",
    ]);
  });

  it("reports YAML syntax errors with a line", () => {
    const problems = problemsOf("repositories: [\n");
    expect(problems[0]).to.match(/^YAML syntax \(line \d+\)/);
  });

  it("says which environment variable a bad value came from", () => {
    const problems = problemsOf(VALID, { GITOPS_TOKEN: "git-secret-token", KEPTN_GITOPS_HTTP_PORT: "abc" });
    expect(problems).to.have.length(1);
    expect(problems[0]).to.match(/^http\.port \(from KEPTN_GITOPS_HTTP_PORT\): /);
  });

  it("refuses a file that is not a mapping, even with overrides set", () => {
    expect(problemsOf("hello\n", { NATS_URL: "nats://x:4222" })).to.deep.equal([
      "(top level): the file must be a YAML mapping of the keys in docs/configuration.md",
    ]);
  });

  it("refuses credentials in a repository URL and a file path that leaves the repository", () => {
    const text = VALID.replace("https://git.example.com", "https://user:t0ken@git.example.com").replace(
      '"charts/{service}/values-{stage}.yaml"',
      '"../{service}.yaml"',
    );
    expect(problemsOf(text, { GITOPS_TOKEN: "git-secret-token" })).to.deep.equal([
      "repositories.0.url: put credentials in auth.token, not in the URL",
      'targets.0.file: "../{service}.yaml" leaves the repository; use a path relative to the repository root',
    ]);
  });

  it("asks for at least one repository and target", () => {
    expect(problemsOf("log: { level: info }\n")).to.deep.equal([
      "repositories: configure at least one repository",
      "targets: configure at least one target",
    ]);
  });
});

describe("configuration of Flux clusters", () => {
  const fluxConfig = (cluster: string, deploy = "{ tool: flux, cluster: edge }") => `
repositories:
  - name: gitops
    url: https://git.example.com/org/gitops.git
flux:
  clusters:
    - name: edge
      kubeconfig: /etc/edge.kubeconfig
${cluster}
targets:
  - repository: gitops
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: ${deploy}
`;
  const load = (text: string, env: Record<string, string>) =>
    loadConfig({ text, source: "config.yaml", env, readSecretFile: () => "" });

  it("reads a Receiver's URL and key from secrets, and the watch defaults", () => {
    const config = load(
      fluxConfig("      receiver: { url: { fromEnv: RECEIVER_URL }, hmacKey: { fromEnv: RECEIVER_KEY } }"),
      { RECEIVER_URL: "http://webhook-receiver.flux-system/hook/0123abcd", RECEIVER_KEY: "receiver-key-42" },
    );
    expect(config.flux.clusters[0]).to.deep.include({
      watch: true,
      watchPollInterval: 30_000,
      receiver: { url: "http://webhook-receiver.flux-system/hook/0123abcd", hmacKey: "receiver-key-42" },
    });
  });

  it("refuses a Receiver URL that is not an http(s) URL with a path, without showing it", () => {
    const problems = problemsOf(fluxConfig("      receiver: { url: { fromEnv: RECEIVER_URL } }"), {
      RECEIVER_URL: "webhook-receiver-secret-digest",
    });
    expect(problems).to.have.length(1);
    expect(problems[0]).to.match(/^flux\.clusters\.0\.receiver\.url: the secret is not an http\(s\) URL/);
    expect(problems[0]).to.not.include("webhook-receiver-secret-digest");
  });

  it("takes HelmRelease as a deploy kind and refuses other kinds", () => {
    const config = load(fluxConfig("", "{ tool: flux, cluster: edge, kind: HelmRelease }"), {});
    expect(config.targets[0]?.deploy).to.deep.include({ kind: "HelmRelease", name: "{service}-{stage}" });
    const problems = problemsOf(fluxConfig("", "{ tool: flux, cluster: edge, kind: OCIRepository }"));
    expect(problems.join("\n")).to.include('deploy.kind is "Kustomization" or "HelmRelease"');
  });
});
