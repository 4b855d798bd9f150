import { expect } from "chai";
import type { ConfigError } from "../../src/config/load-config.js";
import { loadConfig } from "../../src/config/load-config.js";

describe("configuration of signed commits", () => {
  const config = (format: string) => `
repositories:
  - name: gitops
    url: "https://git.example.com/gitops.git"
    signing: { format: ${format}, key: { fromEnv: SIGNING_KEY } }
argocd: { servers: [{ name: main, url: "https://argocd.example.com", token: { fromEnv: T } }] }
targets:
  - repository: gitops
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: main }
`;
  const problems = (format: string, key: string) => {
    try {
      loadConfig({
        text: config(format),
        source: "config.yaml",
        env: { T: "argo-token-123", SIGNING_KEY: key },
      });
      return [];
    } catch (error) {
      return (error as ConfigError).problems;
    }
  };

  it("reads the key of either format, and says what a key of the wrong kind should be", () => {
    const sshKey =
      "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
    expect(problems("ssh", sshKey)).to.deep.equal([]);
    expect(problems("openpgp", sshKey)).to.deep.equal([
      "repositories.0.signing.key: the secret is not an armored OpenPGP secret key (gpg --armor --export-secret-keys)",
    ]);
    expect(problems("ssh", "just-a-token-value")).to.deep.equal([
      "repositories.0.signing.key: the secret is not an SSH private key file",
    ]);
    expect(problems("x509", sshKey).join("\n")).to.include('signing.format is "ssh" or "openpgp"');
  });
});

describe("configuration of HTTPS token schemes", () => {
  const config = (auth: string) => `
repositories:
  - name: gitops
    url: "https://git.example.com/gitops.git"
    auth: ${auth}
argocd: { servers: [{ name: main, url: "https://argocd.example.com", token: { fromEnv: T } }] }
targets:
  - repository: gitops
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: main }
`;
  const load = (auth: string) =>
    loadConfig({
      text: config(auth),
      source: "config.yaml",
      env: { T: "argo-token-123", GIT: "git-token-456" },
    });

  it("sends the token as HTTP Basic unless told bearer", () => {
    expect(load("{ token: { fromEnv: GIT } }").repositories[0]?.auth).to.deep.equal({
      username: "x-access-token",
      token: "git-token-456",
      scheme: "basic",
    });
    expect(load("{ token: { fromEnv: GIT }, scheme: bearer }").repositories[0]?.auth).to.include({
      scheme: "bearer",
    });
  });

  it("refuses a user name with a bearer token", () => {
    expect(() => load("{ token: { fromEnv: GIT }, scheme: bearer, username: me }")).to.throw(
      "repositories.0.auth.username: a bearer token is sent without a user name; remove auth.username",
    );
  });
});

describe("configuration of pull requests, GitHub Apps and several files", () => {
  const APP_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n";
  const config = (repository: string, target = "") => `
repositories:
  - name: gitops
    url: "https://github.com/sockshop/gitops.git"
${repository}
argocd: { servers: [{ name: main, url: "https://argocd.example.com", token: { fromEnv: T } }] }
targets:
  - repository: gitops
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: main }
${target}`;
  const problems = (repository: string, target = "") => {
    try {
      loadConfig({
        text: config(repository, target),
        source: "config.yaml",
        env: { T: "argo-token-123", GIT: "git-token-456", PR: "pr-token-789", APP_KEY },
      });
      return [];
    } catch (error) {
      return (error as ConfigError).problems;
    }
  };

  it("reads pullRequest with its token and defaults, and a GitHub App's key", () => {
    const loaded = loadConfig({
      text: config(`    auth: { githubApp: { appId: 12, installationId: 34, privateKey: { fromEnv: APP_KEY } } }
    pullRequest: { mode: open-only }`),
      source: "config.yaml",
      env: { T: "argo-token-123", APP_KEY },
    });
    expect(loaded.repositories[0]?.auth).to.deep.equal({
      githubApp: { appId: 12, installationId: 34, privateKey: APP_KEY },
    });
    expect(loaded.repositories[0]?.pullRequest).to.deep.equal({
      mode: "open-only",
      tokenHeader: "private-token",
      branchTemplate: "keptn/{project}/{stage}/{service}",
      mergeMethod: "merge",
      pollInterval: 30_000,
    });
    const withToken = loadConfig({
      text: config(`    auth: { token: { fromEnv: GIT } }
    pullRequest: { token: { fromEnv: PR } }`),
      source: "config.yaml",
      env: { T: "argo-token-123", GIT: "git-token-456", PR: "pr-token-789" },
    });
    expect(withToken.repositories[0]?.pullRequest?.token).to.equal("pr-token-789");
  });

  it("says what is missing or contradictory", () => {
    expect(
      problems("    auth: { token: { fromEnv: GIT } }\n    pullRequest: { mode: open-only }"),
    ).to.deep.equal([
      "repositories.0.pullRequest.token: give a token that may open and merge pull requests (or use auth.githubApp on GitHub)",
    ]);
    expect(
      problems(
        "    auth: { token: { fromEnv: GIT }, githubApp: { appId: 1, installationId: 2, privateKey: { fromEnv: APP_KEY } } }",
      ).join("\n"),
    ).to.include("not token and githubApp");
    expect(
      problems("    auth: { githubApp: { appId: 1, installationId: 2, privateKey: { fromEnv: GIT } } }"),
    ).to.deep.equal([
      "repositories.0.auth.githubApp.privateKey: the secret is not a PEM private key; give the .pem file GitHub generated for the app",
    ]);
    expect(
      problems("    auth: { token: { fromEnv: GIT } }", "    pullRequest: { mode: open-only }\n"),
    ).to.deep.equal([
      'targets.0.pullRequest: repository "gitops" has no pullRequest section to open pull requests with; add one there',
    ]);
    expect(
      problems(
        "    auth: { token: { fromEnv: GIT } }\n    pullRequest: { provider: gitlab, token: { fromEnv: PR } }",
      ),
    ).to.deep.equal([]);
    const oneSegment = config(
      "    auth: { token: { fromEnv: GIT } }\n    pullRequest: { provider: github, token: { fromEnv: PR } }",
    ).replace("github.com/sockshop/gitops.git", "git.example.com/gitops.git");
    expect(() => loadConfig({ text: oneSegment, source: "c", env: { T: "a", GIT: "b", PR: "c" } })).to.throw(
      'repositories.0.pullRequest: a GitHub repository URL ends in <owner>/<repo>, not "gitops"',
    );
  });

  it("finds the host from the URL: auto-merge refused on GitHub, a GitHub App refused for GitLab", () => {
    expect(
      problems(
        "    auth: { token: { fromEnv: GIT } }\n    pullRequest: { token: { fromEnv: PR } }",
        "    pullRequest: { mode: auto-merge }\n",
      ),
    ).to.deep.equal([
      'repositories.0.pullRequest: the pull requests are on GitHub, whose REST API cannot turn on auto-merge; use mode "wait-for-merge" (with auto-merge enabled in the repository settings) or "open-only"',
    ]);
    const gitlab = config(
      "    auth: { githubApp: { appId: 1, installationId: 2, privateKey: { fromEnv: APP_KEY } } }\n    pullRequest: {}",
    ).replace("github.com/sockshop", "gitlab.com/sockshop");
    expect(() => loadConfig({ text: gitlab, source: "c", env: { T: "a", APP_KEY } })).to.throw(
      "repositories.0.pullRequest.token: a GitHub App's token does not work with GitLab; give a GitLab token",
    );
  });

  it("takes files instead of file and change, and checks each path", () => {
    const text = config("    auth: { token: { fromEnv: GIT } }").replace(
      `    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }`,
      `    files:
      - { file: "charts/{service}/values-{stage}.yaml", change: { kind: helm-values, tag: image.tag } }
      - { file: "../outside/{servce}.yaml", change: { kind: kustomize-images } }`,
    );
    expect(() => loadConfig({ text, source: "c", env: { T: "a", GIT: "b" } }))
      .to.throw("targets.0.files.1.file: unknown placeholder {servce}")
      .with.property("problems")
      .that.includes(
        'targets.0.files.1.file: "../outside/{servce}.yaml" leaves the repository; use a path relative to the repository root',
      );
    const both = config("    auth: { token: { fromEnv: GIT } }").replace(
      "    deploy: { tool: argocd, server: main }",
      "    files: [{ file: a.yaml, change: { kind: kustomize-images } }]\n    deploy: { tool: argocd, server: main }",
    );
    expect(() => loadConfig({ text: both, source: "c", env: { T: "a", GIT: "b" } })).to.throw(
      "targets.0.files: give file and change, or files, not both",
    );
  });
});
